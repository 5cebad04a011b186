"""GET /metrics in the Prometheus text format, across processes when configured.

Metrics name commands, outbox sizes and lag, and a scrape runs queries: only a scraper
holding METRICS_TOKEN (as `Authorization: Bearer <token>`) may read them. Without a
token configured, a local request may in DEBUG (make run), and nobody may otherwise.
"""

import hmac
import os

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from readmodels.metrics import ProjectionCollector
from shop.web.errors import json_error

_LOCAL_ADDRESSES = {"127.0.0.1", "::1"}


def _refusal(request) -> HttpResponse | None:
    """Return the answer to a request that may not scrape, or None when it may."""
    expected = settings.METRICS_TOKEN
    if not expected:
        if settings.DEBUG and request.META.get("REMOTE_ADDR") in _LOCAL_ADDRESSES:
            return None
        raise PermissionDenied("METRICS_TOKEN is not set.")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode()):
        return None
    return json_error(
        "not_authenticated", "Send Authorization: Bearer <METRICS_TOKEN>.", 401,
        headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
    )


def metrics(request):
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    registry = CollectorRegistry()
    registry.register(ProjectionCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY) + generate_latest(registry)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
