"""Staff powers come from permissions (the shipped groups), never from staff status alone."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model

from orders import commands
from tests.support.http import auth, call
from tests.support.readside import project_all

pytestmark = pytest.mark.django_db(transaction=True)


# What a staff user outside the right group gets, where it is not 403 permission_required:
# a projected document a caller may not see is simply not found.
STAFF_REFUSAL = {"order summary": (404, "not_found"), "dashboard": (404, "not_found")}

# endpoint -> (the group that may, what a customer gets for another customer's things)
API_MATRIX = {
    "create product": ("catalogue", (403, "staff_only")),
    "change product": ("catalogue", (403, "staff_only")),
    "restock": ("catalogue", (403, "staff_only")),
    "top up": ("support", (403, "permission_required")),
    "register a customer": ("support", None),  # a customer who is one already: 409
    "read a customer": ("support", (404, "not_found")),
    "read an order": ("support", (404, "not_found")),
    "place an order for a customer": ("support", (404, "not_found")),
    "pay an order": ("support", (404, "not_found")),
    "cancel an order": ("support", (404, "not_found")),
    "ship an order": ("support", (403, "staff_only")),
    "search orders": ("support", (403, "staff_only")),
    "order stats": ("support", (403, "staff_only")),
    "order summary": ("support", (404, "not_found")),
    "dashboard": ("support", (404, "not_found")),
}


def _request_for(endpoint: str, bob, bobs_order, make_product, make_order):
    """(method, path, body) of one call to `endpoint`, on fresh objects where it changes them."""
    if endpoint == "create product":
        return "POST", "/api/products", {
            "sku": f"NEW-{time.monotonic_ns()}", "name": "New", "category": "c", "price_cents": 1,
        }
    if endpoint in ("change product", "restock"):
        product = make_product()
        if endpoint == "restock":
            return "POST", f"/api/products/{product.pk}/restock", {"quantity": 1}
        return "PATCH", f"/api/products/{product.pk}", {"name": "Renamed"}
    if endpoint == "top up":
        return "POST", f"/api/customers/{bob.pk}/top-ups", {"amount_cents": 1}
    if endpoint == "register a customer":
        return "POST", "/api/customers", {"email": f"n{time.monotonic_ns()}@example.com", "name": "N"}
    if endpoint == "read a customer":
        return "GET", f"/api/customers/{bob.pk}", None
    if endpoint == "read an order":
        return "GET", f"/api/orders/{bobs_order.pk}", None
    if endpoint == "place an order for a customer":
        return "POST", "/api/orders", {
            "customer_id": bob.pk, "lines": [{"product_id": make_product().pk, "quantity": 1}],
        }
    if endpoint in ("pay an order", "cancel an order", "ship an order"):
        order = make_order(customer=bob)
        if endpoint == "ship an order":
            commands.pay_order(order_id=order.pk)
        return "POST", f"/api/orders/{order.pk}/{endpoint.split()[0]}", None
    if endpoint == "search orders":
        return "GET", "/api/orders/search?q=x", None
    if endpoint == "order stats":
        return "GET", "/api/stats/orders", None
    if endpoint == "order summary":
        return "GET", f"/api/orders/{bobs_order.pk}/summary", None
    if endpoint == "dashboard":
        return "GET", f"/api/customers/{bob.pk}/dashboard", None
    raise AssertionError(endpoint)


def test_api_permission_matrix(server, read_models, make_customer, make_product, make_order):
    """Each actor against each staff-guarded endpoint: only the right group gets through."""
    from tests.support.staff import shipped_group

    bob = make_customer(balance_cents=10**9)
    ann = make_customer(balance_cents=10**9)
    bobs_order = make_order(customer=bob)
    project_all()
    actors = {"anonymous": {}, "customer": auth(ann.user)}
    User = get_user_model()
    actors["staff without permissions"] = auth(
        User.objects.create_user(username="nobody", password="x", is_staff=True))
    for group in ("catalogue", "support", "operators"):
        user = User.objects.create_user(username=f"in-{group}", password="x", is_staff=True)
        user.groups.add(shipped_group(group))
        actors[group] = auth(user)

    seen = {}
    for endpoint, (allowed_group, customer_answer) in API_MATRIX.items():
        for actor, headers in actors.items():
            method, path, body = _request_for(endpoint, bob, bobs_order, make_product, make_order)
            if method == "GET":
                project_all()  # within its lag SLO, a projected read answers, not 503
            answer = call(server, method, path, body, headers)
            got = (answer.status, answer.code if answer.status >= 400 else "")
            if actor == allowed_group:
                expected = "2xx"
                ok = 200 <= answer.status < 300
            elif actor == "anonymous":
                expected = (401, "not_authenticated")
                ok = got == expected
            elif actor == "customer":
                expected = customer_answer or (409, "already_exists")
                ok = got == expected
            else:
                expected = STAFF_REFUSAL.get(endpoint, (403, "permission_required"))
                ok = got == expected
            seen[(endpoint, actor)] = (got, expected, ok)
    # A customer's order history: another's answers an empty one (it tells nothing),
    # to staff without the permission too; support sees it.
    project_all()
    for actor, headers in actors.items():
        answer = call(server, "GET", f"/api/customers/{bob.pk}/orders", headers=headers)
        if actor == "anonymous":
            got, expected = (answer.status, answer.code), (401, "not_authenticated")
        else:
            ids = [o["id"] for o in answer.json()["results"]] if answer.status == 200 else []
            got = (answer.status, str(bobs_order.pk) in ids)
            expected = (200, actor == "support")
        seen[("customer's order history", actor)] = (got, expected, got == expected)
    wrong = {key: value[:2] for key, value in seen.items() if not value[2]}
    assert not wrong, "\n".join(f"{k}: got {v[0]}, expected {v[1]}" for k, v in wrong.items())


OPERATIONS = {
    "projections page": ("get", "admin:readmodels_checkpoint_changelist", {}),
    "rebuild confirmation": ("get", "admin:readmodels_rebuild", {}),
    "reconcile confirmation": ("get", "admin:readmodels_reconcile", {}),
    "repair confirmation": ("get", "admin:readmodels_reconcile", {"repair": "1"}),
    "rebuild": ("post", "admin:readmodels_rebuild", {}),
    "reconcile": ("post", "admin:readmodels_reconcile", {}),
    "reconcile and repair": ("post", "admin:readmodels_reconcile", {"repair": "1"}),
    "retry dead letters": ("post", "admin:readmodels_retry_dead_letters", {}),
}


def test_admin_operations_need_their_permissions(read_models, make_customer):
    """The projections page and each operation on it; the dead-letter actions."""
    from django.test import Client
    from django.urls import reverse

    from readmodels.models import DeadLetter, DeadLetterStatus, ReconcileRun
    from tests.support.staff import shipped_group

    User = get_user_model()
    users = {"staff without permissions": User.objects.create_user(
        username="nobody", password="x", is_staff=True)}
    for group in ("catalogue", "support", "operators"):
        users[group] = User.objects.create_user(username=f"in-{group}", password="x", is_staff=True)
        users[group].groups.add(shipped_group(group))
    letter = DeadLetter.objects.create(
        projector="order_summary", outbox_position=1, outbox_xid=1, aggregate_type="order",
        aggregate_id="x", event_type="OrderPlaced", error="boom", status=DeadLetterStatus.DEAD)

    for who, user in users.items():
        client = Client()
        client.force_login(user)
        for operation, (method, name, data) in OPERATIONS.items():
            args = [] if operation == "projections page" else ["order_summary"]
            runs = ReconcileRun.objects.count()
            response = getattr(client, method)(reverse(name, args=args), data)
            if who == "operators":
                assert response.status_code == (200 if method == "get" else 302), (who, operation)
            else:
                assert response.status_code == 403, (who, operation, response.status_code)
                # The admin refuses with an admin page (HTML) that names what is missing.
                assert b'id="refused"' in response.content, (who, operation)
                assert b"This needs the permission readmodels." in response.content
                assert ReconcileRun.objects.count() == runs
        if who != "operators":
            for action in ("retry", "discard"):
                client.post("/admin/readmodels/deadletter/",
                            {"action": action, "_selected_action": [str(letter.pk)], "index": "0"})
                letter.refresh_from_db()
                assert letter.status == DeadLetterStatus.DEAD, (who, action)

    operator = Client()
    operator.force_login(users["operators"])
    page = operator.get(reverse("admin:readmodels_checkpoint_changelist")).content.decode()
    # The retry button names how many there are (it shows only when there are some).
    assert "Reconcile and repair" in page and "Retry 1 dead letter" in page
    operator.post("/admin/readmodels/deadletter/",
                  {"action": "discard", "_selected_action": [str(letter.pk)], "index": "0"})
    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.DISCARDED


@pytest.mark.django_db  # before any transactional test's flush empties the groups table
def test_the_migrations_ship_the_three_groups():
    from django.contrib.auth.models import Group

    from tests.support.staff import shipped_groups

    for name, permissions in shipped_groups().items():
        group = Group.objects.get(name=name)
        granted = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
        assert granted == set(permissions), name
