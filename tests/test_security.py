"""Security guarantees, over HTTP against real uvicorn servers on the test database.

Consistency tokens are signed; inactive products are not public; Django's own errors
are JSON; /metrics needs its bearer token and readiness tells no internal error text;
only staff with the top-up permission, or the payment provider's signed callback,
credit a balance.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import override_settings
from knox.models import AuthToken

from orders import commands, payments
from orders.models import Customer, OutboxMessage, PaymentEvent
from orders.outbox import Position, encode_token
from tests.readside import project_all
from tests.servers import free_port, uvicorn_server

pytestmark = pytest.mark.django_db(transaction=True)

METRICS_TOKEN = "metrics-token-only-for-these-tests"
WEBHOOK_SECRET = "payment-webhook-secret-only-for-these-tests"
OLD_KEY = "the-secret-key-before-the-rotation-only-for-these-tests"


@pytest.fixture(scope="module")
def server(django_db_setup, elasticsearch_server):
    """The shop as deployed: DEBUG off, metrics token, webhook secret, a rotated key."""
    with uvicorn_server(
        METRICS_TOKEN=METRICS_TOKEN,
        PAYMENT_WEBHOOK_SECRET=WEBHOOK_SECRET,
        DJANGO_SECRET_KEY_FALLBACKS=OLD_KEY,
    ) as port:
        yield port


@pytest.fixture(scope="module")
def bare_server(django_db_setup, elasticsearch_server):
    """DEBUG off with no metrics token nor webhook secret, and Elasticsearch unreachable."""
    with uvicorn_server(ELASTICSEARCH_URL=f"http://127.0.0.1:{free_port()}") as port:
        yield port


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return json.loads(self.body)

    @property
    def code(self) -> str:
        return self.json()["error"]["code"]


def call(port: int, method: str, path: str, body=None, headers: dict | None = None) -> Answer:
    headers = dict(headers or {})
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return Answer(
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read(),
        )
    finally:
        conn.close()


def auth(user) -> dict:
    _, token = AuthToken.objects.create(user=user)
    return {"Authorization": f"Token {token}"}


def balance(customer) -> int:
    return Customer.objects.get(pk=customer.pk).balance_cents


@pytest.fixture
def bare_staff():
    """Staff with no permissions at all."""
    return get_user_model().objects.create_user(username="bare-staff", password="x", is_staff=True)


@pytest.fixture
def superuser():
    return get_user_model().objects.create_superuser(username="root", password="x")


# --- consistency tokens are signed -----------------------------------------------------


def test_a_forged_token_is_refused_at_once_on_public_search(server, read_models):
    """A made-up far-future position would hold the read for its whole wait."""
    project_all()  # the view is up to date: only the token could make it wait
    unsigned = base64.urlsafe_b64encode(f"ct1.{2**62}.0".encode()).decode().rstrip("=")
    with override_settings(SECRET_KEY="a-key-an-attacker-guessed"):
        wrong_key = encode_token(Position(2**62, 0))
    for forged in (unsigned, wrong_key):
        answer = call(server, "GET", "/api/products/search?max_wait_ms=2000",
                      headers={"X-Consistency-Token": forged})
        assert answer.status == 400, answer
        assert answer.code == "invalid_consistency_token"


def test_issued_tokens_are_honoured_and_survive_a_key_rotation(server, read_models, staff_user):
    created = call(server, "POST", "/api/products", {
        "sku": "SIGNED-1", "name": "Signed", "category": "c", "price_cents": 100, "stock": 1,
    }, auth(staff_user))
    assert created.status == 201, created
    project_all()
    issued = created.headers["x-consistency-token"]
    # A token signed before the key was rotated: the old key is a fallback now.
    with override_settings(SECRET_KEY=OLD_KEY):
        from_before = encode_token(Position(0, 0))
    for token in (issued, from_before):
        answer = call(server, "GET", "/api/products/search?q=SIGNED-1",
                      headers={"X-Consistency-Token": token})
        assert answer.status == 200, answer
        assert answer.headers["x-stale"] == "false"
        assert [r["sku"] for r in answer.json()["results"]] == ["SIGNED-1"]


# --- inactive products are not public --------------------------------------------------


def test_an_inactive_product_is_visible_to_staff_only(
    server, read_models, make_product, make_customer, bare_staff
):
    hidden = make_product(sku="OFF-1", name="Withdrawn", active=False, stock=7)
    shown = make_product(sku="ON-1", name="Offered", stock=3)
    customer = make_customer()
    missing = call(server, "GET", "/api/products/999999999")
    for headers in ({}, auth(customer.user)):
        answer = call(server, "GET", f"/api/products/{hidden.pk}", headers=headers)
        assert answer.status == 404, answer
        assert answer.json() == missing.json()  # indistinguishable from a missing product
        assert call(server, "GET", f"/api/products/{shown.pk}", headers=headers).status == 200
    for_staff = call(server, "GET", f"/api/products/{hidden.pk}", headers=auth(bare_staff))
    assert for_staff.status == 200, for_staff
    assert for_staff.json()["stock"] == 7

    # The public search index serves active products only, to everyone.
    project_all()
    for headers in ({}, auth(customer.user), auth(bare_staff)):
        found = call(server, "GET", "/api/products/search?q=Withdrawn", headers=headers)
        assert found.status == 200
        assert "OFF-1" not in [r["sku"] for r in found.json()["results"]]
        assert call(server, "GET", "/api/products/search?q=ON-1").json()["results"]


# --- Django's own errors are JSON ------------------------------------------------------


def _too_large(settings) -> bytes:
    return b'{"lines": [], "pad": "' + b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + b'"}'


def test_a_body_over_the_upload_limit_is_a_json_413(server, make_customer, settings):
    customer = make_customer()
    answer = call(server, "POST", "/api/orders", _too_large(settings),
                  {**auth(customer.user), "Content-Type": "application/json"})
    assert answer.status == 413, answer
    assert answer.code == "request_too_large"


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/health"), ("GET", "/api/products/search"), ("POST", "/api/orders"),
    ("GET", "/admin/"),
])
def test_a_disallowed_host_is_a_json_400(server, method, path):
    answer = call(server, method, path, headers={"Host": "shop.evil.example"})
    assert answer.status == 400, answer
    assert answer.code == "bad_host"


# --- internal endpoints ----------------------------------------------------------------


def test_metrics_need_the_bearer_token(server, staff_user):
    for headers in [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {METRICS_TOKEN}x"},
        {"Authorization": f"Token {METRICS_TOKEN}"},
        auth(staff_user),  # an API login is not a scraper
    ]:
        answer = call(server, "GET", "/metrics", headers=headers)
        assert answer.status == 401, (headers, answer)
        assert answer.code == "not_authenticated"
        assert answer.headers["www-authenticate"].startswith("Bearer")
    answer = call(server, "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert b"shop_outbox_rows" in answer.body


def test_without_a_metrics_token_production_serves_no_metrics(bare_server):
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}):
        answer = call(bare_server, "GET", "/metrics", headers=headers)
        assert answer.status == 403, answer
        assert answer.code == "permission_denied"


def test_without_a_metrics_token_debug_serves_local_scrapes_only(client, settings):
    settings.DEBUG = True
    settings.METRICS_TOKEN = None
    assert client.get("/metrics").status_code == 200  # the test client comes from 127.0.0.1
    remote = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert remote.status_code == 403
    assert remote.json()["error"]["code"] == "permission_denied"


def test_health_is_minimal_and_readiness_treats_elasticsearch_as_degraded(server, bare_server):
    assert call(server, "GET", "/api/health").json() == {"status": "ok"}
    assert call(bare_server, "GET", "/api/health").json() == {"status": "ok"}
    assert call(server, "GET", "/api/health/ready").json()["status"] == "ok"

    ready = call(bare_server, "GET", "/api/health/ready")
    assert ready.status == 200, ready
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["degraded"] == ["elasticsearch"]
    assert {name: c["status"] for name, c in body["checks"].items()} == {
        "postgres": "ok", "redis": "ok", "elasticsearch": "down", "broker": "ok",
    }
    assert all(set(c) <= {"status", "ms"} for c in body["checks"].values()), body


def test_readiness_without_redis_is_503_without_internal_error_text(django_db_setup):
    port = free_port()
    with uvicorn_server(REDIS_URL=f"redis://127.0.0.1:{port}/0") as web:
        ready = call(web, "GET", "/api/health/ready")
    assert ready.status == 503, ready
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["postgres"]["status"] == "ok"
    assert all(set(c) <= {"status", "ms"} for c in body["checks"].values()), body
    assert str(port).encode() not in ready.body
    assert b"rror" not in ready.body and b"refused" not in ready.body


# --- who may credit a balance ----------------------------------------------------------


def test_top_up_permission_matrix(server, make_customer, staff_user, bare_staff, superuser):
    ann, bob = make_customer(balance_cents=1000), make_customer(balance_cents=1000)
    top_up_of = lambda customer: f"/api/customers/{customer.pk}/top-ups"  # noqa: E731
    refused = [
        ("anonymous", {}, ann, 401, "not_authenticated"),
        ("customer, own balance", auth(ann.user), ann, 403, "permission_required"),
        ("customer, another's", auth(ann.user), bob, 403, "permission_required"),
        ("staff without the permission", auth(bare_staff), ann, 403, "permission_required"),
    ]
    for who, headers, customer, status, code in refused:
        answer = call(server, "POST", top_up_of(customer), {"amount_cents": 10**12}, headers)
        assert (answer.status, answer.code) == (status, code), who
    assert balance(ann) == balance(bob) == 1000

    for who, user in [("staff with orders.top_up_balance", staff_user), ("superuser", superuser)]:
        answer = call(server, "POST", top_up_of(bob), {"amount_cents": 500}, auth(user))
        assert answer.status == 200, (who, answer)
    assert balance(bob) == 2000

    # The permission is all it takes, given through a group as in the back office.
    from django.contrib.auth.models import Group

    group = Group.objects.create(name="payments desk")
    group.permissions.add(Permission.objects.get(codename="top_up_balance"))
    bare_staff.groups.add(group)
    answer = call(server, "POST", top_up_of(ann), {"amount_cents": 1}, auth(bare_staff))
    assert answer.status == 200, answer


def _deliver(port, event: dict, *, secret=WEBHOOK_SECRET, timestamp=None, body=None, header=None,
             skew=0):
    """`skew`: seconds the signature's timestamp is off from now, taken at delivery."""
    raw = body if body is not None else json.dumps(event).encode()
    if header is None:
        stamp = int(time.time()) + skew if timestamp is None else timestamp
        header = payments.sign(body=raw, timestamp=stamp, secret=secret)
    return call(port, "POST", "/api/payments/webhook", raw,
                {"Content-Type": "application/json", payments.SIGNATURE_HEADER: header})


def test_a_signed_payment_event_credits_the_balance_once(server, make_customer):
    customer = make_customer(balance_cents=100)
    event = {"event_id": "evt_1", "customer_id": customer.pk, "amount_cents": 2500}
    raw = json.dumps(event).encode()
    header = payments.sign(body=raw, timestamp=int(time.time()), secret=WEBHOOK_SECRET)

    first = _deliver(server, event, body=raw, header=header)
    assert first.status == 200, first
    assert first.json() == {"event_id": "evt_1", "status": "credited"}
    assert first.headers["x-consistency-token"]
    assert balance(customer) == 2600
    row = OutboxMessage.objects.filter(
        aggregate_type="customer", aggregate_id=str(customer.pk), event_type="BalanceToppedUp"
    ).latest("position")
    assert row.payload == {"balance_cents": 2600, "amount_cents": 2500, "payment_event_id": "evt_1"}

    # The same delivery replayed (same bytes, same signature), and the provider's own
    # redelivery (signed anew): each answered 200, neither credits again.
    assert _deliver(server, event, body=raw, header=header).json()["status"] == "already_credited"
    assert _deliver(server, event).json()["status"] == "already_credited"
    assert balance(customer) == 2600
    assert PaymentEvent.objects.filter(event_id="evt_1").count() == 1


def test_concurrent_deliveries_of_one_event_credit_once(server, make_customer):
    customer = make_customer()
    event = {"event_id": "evt_race", "customer_id": customer.pk, "amount_cents": 700}
    answers: list[Answer] = []
    threads = [
        threading.Thread(target=lambda: answers.append(_deliver(server, event))) for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.json()["status"] for a in answers) == ["already_credited"] * 5 + ["credited"]
    assert balance(customer) == 700


def test_payment_events_without_a_valid_fresh_signature_credit_nothing(server, make_customer):
    customer = make_customer(balance_cents=100)
    event = {"event_id": "evt_bad", "customer_id": customer.pk, "amount_cents": 10**12}
    raw = json.dumps(event).encode()
    now = int(time.time())
    tampered = json.dumps({**event, "amount_cents": 1}).encode()
    cases = [
        ("no signature", dict(header=""), "invalid_signature"),
        ("garbage", dict(header="v1=zz,t=x"), "invalid_signature"),
        ("wrong secret", dict(secret="guessed"), "invalid_signature"),
        ("signature of another body",
         dict(body=raw, header=payments.sign(body=tampered, timestamp=now, secret=WEBHOOK_SECRET)),
         "invalid_signature"),
        ("timestamp changed after signing",
         dict(body=raw, header=payments.sign(body=raw, timestamp=now, secret=WEBHOOK_SECRET)
              .replace(f"t={now}", f"t={now + 1}")),
         "invalid_signature"),
        # Past the 300 s tolerance by half a minute, counted at delivery: a test `now`
        # taken earlier made "the future" fresh once the first cases took over a second.
        ("stale", dict(skew=-330), "stale_signature"),
        ("from the future", dict(skew=330), "stale_signature"),
    ]
    for what, kwargs, code in cases:
        answer = _deliver(server, event, **kwargs)
        assert (answer.status, answer.code) == (401, code), what
    assert balance(customer) == 100
    assert not PaymentEvent.objects.exists()

    # A well-signed event that is not a valid credit is refused, and leaves no record
    # that would swallow its corrected redelivery.
    for wrong in ({**event, "amount_cents": 0}, {**event, "customer_id": 999999999}):
        answer = _deliver(server, wrong)
        assert answer.status in (400, 404), answer
    assert not PaymentEvent.objects.exists()
    ok = _deliver(server, {**event, "amount_cents": 900})
    assert ok.json()["status"] == "credited"
    assert balance(customer) == 1000


def test_the_webhook_refuses_everything_when_no_secret_is_set(bare_server, make_customer):
    customer = make_customer()
    event = {"event_id": "evt_x", "customer_id": customer.pk, "amount_cents": 100}
    for secret in ("", "anything"):
        answer = _deliver(bare_server, event, secret=secret)
        assert answer.status == 503, answer
        assert answer.code == "payments_not_configured"
    assert balance(customer) == 0


def test_an_oversized_callback_is_a_json_413(server, settings):
    answer = call(server, "POST", "/api/payments/webhook", _too_large(settings),
                  {"Content-Type": "application/json", payments.SIGNATURE_HEADER: "t=1,v1=00"})
    assert answer.status == 413, answer
    assert answer.code == "request_too_large"


# --- staff powers come from permissions ------------------------------------------------

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
    from tests.conftest import shipped_group

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
    from tests.conftest import shipped_group

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
                assert response.json()["error"]["code"] == "permission_denied"
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
    assert "Reconcile and repair" in page and "Retry dead letters" in page
    operator.post("/admin/readmodels/deadletter/",
                  {"action": "discard", "_selected_action": [str(letter.pk)], "index": "0"})
    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.DISCARDED


@pytest.mark.django_db  # before any transactional test's flush empties the groups table
def test_the_migrations_ship_the_three_groups():
    from django.contrib.auth.models import Group

    from tests.conftest import shipped_groups

    for name, permissions in shipped_groups().items():
        group = Group.objects.get(name=name)
        granted = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
        assert granted == set(permissions), name
