"""Liveness and readiness: which dependency is down, and Elasticsearch only degrades."""

from __future__ import annotations

import pytest

from tests.support.ports import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def test_liveness_and_readiness(read_models, client):
    live = client.get("/api/health")
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}

    ready = client.get("/api/health/ready")
    assert ready.status_code == 200, ready.content
    body = ready.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"postgres", "redis", "elasticsearch", "broker"}
    assert {c["status"] for c in body["checks"].values()} == {"ok"}


def test_readiness_says_which_dependency_is_down(read_models, client, settings):
    settings.ELASTICSEARCH_URL = f"http://127.0.0.1:{free_port()}"

    ready = client.get("/api/health/ready")

    # Reads built on Elasticsearch degrade by design: degraded, not unready.
    assert ready.status_code == 200, ready.content
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["degraded"] == ["elasticsearch"]
    assert body["checks"]["elasticsearch"]["status"] == "down"
    # Public: which dependency, never the internal error text.
    assert "error" not in body["checks"]["elasticsearch"]
    for name in ("postgres", "redis", "broker"):
        assert body["checks"][name]["status"] == "ok", body
    # Liveness does not depend on the stores.
    assert client.get("/api/health").status_code == 200
