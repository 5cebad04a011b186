"""Liveness and readiness: is the process up, and can it reach what it needs?

Both are public (load balancers and orchestrators call them without credentials), so
they say which dependency is down but never how: the error itself goes to the log.
Elasticsearch down makes the shop degraded, not unready: commands do not need it, and
the reads built on it degrade by design (503 with Retry-After, or a fallback). So does
a transaction holding the outbox horizon past HORIZON_HOLD_ALERT_SECONDS: every view
stands still behind it (`projections status`, /metrics and the admin name it).

Readiness is exempt from admission (it must tell "overloaded" from "down"), so it must
not cost the shop what it protects: it never takes a pooled database connection (its
own connection, with short timeouts), checks each dependency within
HEALTH_CHECK_TIMEOUT_SECONDS, all at once, and a process runs one probe at a time:
probes arriving meanwhile, or within HEALTH_CACHE_SECONDS of the last, get its answer.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
from django.conf import settings
from django.http import JsonResponse

from orders.outbox import horizon
from readmodels import config
from readmodels.stores import es
from shop.web import redis_clients

logger = logging.getLogger(__name__)

# Dependencies the shop can serve without, in a degraded way.
OPTIONAL = frozenset({"elasticsearch", "outbox_horizon"})


def live(request):
    return JsonResponse({"status": "ok"})


def _timeout() -> float:
    return float(getattr(settings, "HEALTH_CHECK_TIMEOUT_SECONDS", 1.0))


def _postgres() -> horizon.HorizonHolder | None:
    """PostgreSQL answers; return the transaction holding the outbox horizon, if any."""
    db = settings.DATABASES["default"]
    timeout_ms = int(_timeout() * 1000)
    with psycopg.connect(
        host=db["HOST"] or None, port=db["PORT"] or None, user=db["USER"] or None,
        password=db["PASSWORD"] or None, dbname=db["NAME"], autocommit=True,
        connect_timeout=max(1, int(_timeout())), application_name="shop-health",
        options=f"-c statement_timeout={timeout_ms}",
    ) as conn:
        holder = horizon.holder_from_row(conn.execute(horizon.holder_sql()).fetchone())
    return holder


def _redis() -> None:
    # A pool of the probe's own (through Sentinel when configured), with the probe's
    # short timeout: never the views' pool, whose calls may wait up to the store timeout.
    redis_clients.client(timeout=_timeout(), pool="health").ping()


def _elasticsearch() -> None:
    if not es.client().options(request_timeout=_timeout()).ping():
        raise ConnectionError(f"no answer from {settings.ELASTICSEARCH_URL}")


def _broker() -> None:
    from shop.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=_timeout())


def _timed(name, probe):
    started = time.monotonic()
    try:
        found = probe()
        outcome = {"status": "ok"}
    except Exception as exc:  # noqa: BLE001 - any failure means down; say which
        logger.warning("readiness: %s is down: %s: %s", name, type(exc).__name__, exc)
        found, outcome = None, {"status": "down"}
    outcome["ms"] = round((time.monotonic() - started) * 1000, 1)
    return outcome, found


def _probe() -> tuple[dict, int]:
    probes = {"postgres": _postgres, "redis": _redis, "elasticsearch": _elasticsearch,
              "broker": _broker}
    with ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="readiness") as pool:
        futures = {name: pool.submit(_timed, name, probe) for name, probe in probes.items()}
        results = {name: future.result() for name, future in futures.items()}
    checks = {name: outcome for name, (outcome, _) in results.items()}
    holder = results["postgres"][1]
    if holder is not None and holder.age_seconds is not None \
            and holder.age_seconds > config.horizon_hold_alert_seconds():
        # The holder itself is named where operators look, never to anonymous callers.
        logger.warning("readiness: the outbox horizon is held by %s", holder.describe())
        checks["outbox_horizon"] = {"status": "held"}
    down = sorted(name for name, c in checks.items() if c["status"] != "ok")
    unready = [name for name in down if name not in OPTIONAL]
    degraded = [name for name in down if name in OPTIONAL]
    body = {"status": "unavailable" if unready else "degraded" if degraded else "ok"}
    if degraded:
        body["degraded"] = degraded
    body["checks"] = checks
    return body, 503 if unready else 200


_lock = threading.Lock()
_answers: dict[tuple, tuple[float, dict, int]] = {}


def _dependencies() -> tuple:
    db = settings.DATABASES["default"]
    return (db["HOST"], db["PORT"], db["NAME"], settings.REDIS_URL, settings.ELASTICSEARCH_URL,
            settings.CELERY_BROKER_URL, tuple(getattr(settings, "REDIS_SENTINELS", ()) or ()))


def ready(request):
    key = _dependencies()
    fresh_for = float(getattr(settings, "HEALTH_CACHE_SECONDS", 1.0))
    # One probe at a time per process: the others wait for its answer (bounded by the
    # checks' own timeouts) instead of each taking connections of their own.
    with _lock:
        found = _answers.get(key)
        if found is None or time.monotonic() - found[0] > fresh_for:
            body, status = _probe()
            found = _answers[key] = (time.monotonic(), body, status)
    _, body, status = found
    return JsonResponse(body, status=status)
