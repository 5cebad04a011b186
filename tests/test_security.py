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
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from rest_framework.authtoken.models import Token

from orders.models import Customer
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
    token, _ = Token.objects.get_or_create(user=user)
    return {"Authorization": f"Token {token.key}"}


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
