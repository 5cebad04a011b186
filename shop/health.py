"""Liveness and readiness: is the process up, and can it reach what it needs?

Both are public (load balancers and orchestrators call them without credentials), so
they say which dependency is down but never how: the error itself goes to the log.
Elasticsearch down makes the shop degraded, not unready: commands do not need it, and
the reads built on it degrade by design (503 with Retry-After, or a fallback).
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse

logger = logging.getLogger(__name__)

# Dependencies the shop can serve without, in a degraded way.
OPTIONAL = frozenset({"elasticsearch"})


def live(request):
    return JsonResponse({"status": "ok"})


def _check(name, probe) -> dict:
    started = time.monotonic()
    try:
        probe()
        outcome = {"status": "ok"}
    except Exception as exc:  # noqa: BLE001 - any failure means down; say which
        logger.warning("readiness: %s is down: %s: %s", name, type(exc).__name__, exc)
        outcome = {"status": "down"}
    outcome["ms"] = round((time.monotonic() - started) * 1000, 1)
    return outcome


def _postgres():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis():
    from readmodels.stores import redis_store

    redis_store.client().ping()


def _elasticsearch():
    from readmodels.stores import es

    if not es.client().ping():
        raise ConnectionError(f"no answer from {settings.ELASTICSEARCH_URL}")


def _broker():
    from shop.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def ready(request):
    checks = {
        "postgres": _check("postgres", _postgres),
        "redis": _check("redis", _redis),
        "elasticsearch": _check("elasticsearch", _elasticsearch),
        "broker": _check("broker", _broker),
    }
    down = sorted(name for name, c in checks.items() if c["status"] != "ok")
    unready = [name for name in down if name not in OPTIONAL]
    degraded = [name for name in down if name in OPTIONAL]
    body = {"status": "unavailable" if unready else "degraded" if degraded else "ok"}
    if degraded:
        body["degraded"] = degraded
    body["checks"] = checks
    return JsonResponse(body, status=503 if unready else 200)
