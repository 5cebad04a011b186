"""Liveness and readiness: is the process up, and can it reach what it needs?"""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse


def live(request):
    return JsonResponse({"status": "ok"})


def _check(name, probe) -> dict:
    started = time.monotonic()
    try:
        probe()
        outcome = {"status": "ok"}
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; say which
        outcome = {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
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
    ok = all(c["status"] == "ok" for c in checks.values())
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )
