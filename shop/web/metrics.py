"""Prometheus metrics of the web layer: requests refused before any work, reads by consistency."""

from __future__ import annotations

from prometheus_client import Counter

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

SHED = Counter(
    "shop_requests_shed_total",
    "Requests refused with 503 before any work, by kind (read, command) and reason "
    "(overloaded: over the admission limit; database_busy: no pooled connection in time).",
    ["kind", "reason"],
)
READS = Counter(
    "shop_reads_total",
    "Reads served, by read model (or write_model) and consistency "
    "(strong, eventual, strong-fallback, stale, unavailable).",
    ["read_model", "consistency"],
)


def record_shed(method: str, reason: str = "overloaded") -> None:
    SHED.labels("read" if method in READ_METHODS else "command", reason).inc()
