"""Prometheus metrics of the web layer: requests and bodies refused before any work, reads by consistency."""

from __future__ import annotations

from prometheus_client import Counter

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

SHED = Counter(
    "shop_requests_shed_total",
    "Requests refused with 503 before any work, by kind (read, command) and reason "
    "(overloaded: over the admission limit; receiving: every place for a body still "
    "arriving taken; database_busy: no pooled connection in time).",
    ["kind", "reason"],
)
BODIES_REFUSED = Counter(
    "shop_request_bodies_refused_total",
    "Request bodies refused before any work, by code (request_too_large: over "
    "WEB_MAX_BODY_BYTES; body_timeout: not received within WEB_BODY_TIMEOUT_SECONDS).",
    ["code"],
)
READS = Counter(
    "shop_reads_total",
    "Reads served, by read model (or write_model) and consistency "
    "(strong, eventual, strong-fallback, stale, unavailable).",
    ["read_model", "consistency"],
)


def record_body_refused(code: str) -> None:
    BODIES_REFUSED.labels(code).inc()


def record_shed(method: str, reason: str = "overloaded") -> None:
    SHED.labels("read" if method in READ_METHODS else "command", reason).inc()
