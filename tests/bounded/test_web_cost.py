"""What one request costs a web process beyond its own work (issue "Under load").

The web processes are the shop's bottleneck under load (docs/PIPELINE_PROFILE.md): these
pin the two pieces of plumbing that cost the most and are easy to bring back unnoticed.
"""

from __future__ import annotations

import asgiref.sync
import pytest
from asgiref.testing import ApplicationCommunicator
from rest_framework import serializers

from orders import commands, selectors
from orders.api import serializers as s
from shop.web.asgi_handler import OneHopASGIHandler


def _get(path: str) -> dict:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }


async def _serve(handler, path: str) -> int:
    app = ApplicationCommunicator(handler, _get(path))
    await app.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await app.receive_output(10)
    while (await app.receive_output(10)).get("more_body"):
        pass
    await app.wait(10)
    return start["status"]


def test_a_request_crosses_to_its_thread_once_for_all_middleware_and_the_view(monkeypatch):
    """Django's own ASGI handler crosses for each middleware's request and response step
    (17 crossings for this request); the shop's enters its middleware once."""
    crossings = []
    original = asgiref.sync.SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        crossings.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    handler = OneHopASGIHandler()
    monkeypatch.setattr(asgiref.sync.SyncToAsync, "__call__", counted)

    assert asgiref.sync.async_to_sync(_serve)(handler, "/api/") == 200
    # request_started's receivers, the middleware with the view, the response's close
    # (request_finished): one crossing each.
    assert len(crossings) == 3, crossings


@pytest.mark.django_db
def test_shown_objects_are_what_a_fresh_serializer_shows_without_building_fields(
    make_customer, make_product, monkeypatch
):
    customer = make_customer(balance_cents=50_000)
    products = [make_product(price_cents=1250), make_product(price_cents=99)]
    placed = commands.place_order(
        customer_id=customer.pk,
        lines=[commands.LineRequest(product_id=p.pk, quantity=2) for p in products],
    ).value
    commands.pay_order(order_id=placed.pk)
    commands.ship_order(order_id=placed.pk)
    order = selectors.get_order(order_id=placed.pk)
    customer.refresh_from_db()
    cases = [
        (s.show_order, s.OrderOut, order), (s.show_order, s.OrderOut, placed),
        (s.show_customer, s.CustomerOut, customer), (s.show_product, s.ProductOut, products[0]),
    ]
    expected = [serializer(instance).data for _, serializer, instance in cases]
    assert expected[0]["paid_at"] and expected[0]["shipped_at"] and expected[0]["payments"]

    builds = []
    original = serializers.ModelSerializer.get_fields

    def counted(self):
        builds.append(type(self).__name__)
        return original(self)

    monkeypatch.setattr(serializers.ModelSerializer, "get_fields", counted)
    shown = [show(instance) for show, _, instance in cases]

    assert shown == expected
    assert builds == []


@pytest.mark.django_db
def test_a_token_is_checked_with_one_query_that_the_orm_does_not_build(monkeypatch):
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models.sql.compiler import SQLCompiler
    from django.test.utils import CaptureQueriesContext
    from knox.models import AuthToken
    from rest_framework.exceptions import AuthenticationFailed

    from shop.web.api_tokens import ApiTokenAuthentication

    hana = get_user_model().objects.create_user(username="hana", email="hana@example.com")
    row, token = AuthToken.objects.create(user=hana)
    built = []
    original = SQLCompiler.as_sql

    def counted(self, *args, **kwargs):
        built.append(self.query.model.__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "as_sql", counted)
    with CaptureQueriesContext(connection) as queries:
        user, auth_token = ApiTokenAuthentication().authenticate_credentials(token.encode())
        assert (user.pk, user.username, user.email, user.is_active) == (
            hana.pk, "hana", "hana@example.com", True)
        assert auth_token.pk == row.pk and auth_token.expiry == row.expiry

    assert len(queries) == 1 and built == []
    forged = token[: len(token) - 1] + ("0" if token[-1] != "0" else "1")  # same key
    with pytest.raises(AuthenticationFailed):
        ApiTokenAuthentication().authenticate_credentials(forged.encode())


@pytest.mark.django_db
def test_placing_an_order_and_showing_it_takes_three_statements_and_no_orm_reads(
    make_customer, make_product, monkeypatch
):
    """The checks read the customer and products in one statement; the reservation and
    the insert are one statement each; showing the new order queries nothing."""
    from django.db import connection
    from django.db.models.sql.compiler import SQLCompiler
    from django.test.utils import CaptureQueriesContext

    customer = make_customer()
    products = [make_product(), make_product()]
    built = []
    original = SQLCompiler.as_sql

    def counted(self, *args, **kwargs):
        built.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "as_sql", counted)
    with CaptureQueriesContext(connection) as queries:
        placed = commands.place_order(
            customer_id=customer.pk,
            lines=[commands.LineRequest(product_id=p.pk, quantity=1) for p in products],
        ).value
        shown = s.show_order(placed)

    statements = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == 3, statements
    assert statements[1].startswith("WITH wanted") and "INSERT" in statements[2]
    # No query compiled by the ORM's SELECT compiler (the INSERT's SQL comes from
    # SQLInsertCompiler, which has its own as_sql).
    assert built == [], built
    assert shown["payments"] == [] and len(shown["lines"]) == 2
