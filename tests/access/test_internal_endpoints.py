"""/metrics needs its bearer token; health says which dependency is down, never the error."""

from __future__ import annotations

import pytest

from tests.support.http import auth, call
from tests.support.ports import free_port
from tests.support.servers import METRICS_TOKEN, uvicorn_server

pytestmark = pytest.mark.django_db(transaction=True)


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
