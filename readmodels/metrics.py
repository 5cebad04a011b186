"""Prometheus metrics of the read side.

Counters and histograms are updated where things happen (workers, web processes);
with PROMETHEUS_MULTIPROC_DIR set they are shared across gunicorn and Celery
processes on a host. Lag, rows behind, SLO breaches, dead letters and outbox size are
measured from PostgreSQL at scrape time by ProjectionCollector, so they are right
even when every worker is down.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from orders import outbox as outbox_horizon
from readmodels import config

logger = logging.getLogger(__name__)

COMMIT_TO_VISIBLE = Histogram(
    "shop_projection_commit_to_visible_seconds",
    "From an outbox row's creation to its document being visible (searchable) in the view.",
    ["read_model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
ROWS_PROJECTED = Counter(
    "shop_projection_rows_total", "Outbox rows projected into a view.", ["read_model"]
)
PROJECTION_FAILURES = Counter(
    "shop_projection_failures_total",
    "Failed projector runs, by kind (store_unavailable, row_failed, dead_letter).",
    ["read_model", "kind"],
)


# Rows behind are counted up to this many per segment on a scrape: a full count of a
# segment far behind would scan everything after its checkpoint, on every scrape.
ROWS_BEHIND_CAP = 100_000


class ProjectionCollector:
    """Gauges measured from PostgreSQL on each scrape (bounded work per segment)."""

    def collect(self):
        from readmodels.operations import status

        lag = GaugeMetricFamily(
            "shop_projection_lag_seconds",
            "Age of the oldest change not yet visible in the view (0 when caught up).",
            labels=["read_model", "segment"],
        )
        behind = GaugeMetricFamily(
            "shop_projection_rows_behind",
            f"Outbox rows not yet projected (counted up to {ROWS_BEHIND_CAP}).",
            labels=["read_model", "segment"],
        )
        slo = GaugeMetricFamily(
            "shop_projection_slo_seconds", "Lag SLO of the view.", labels=["read_model"]
        )
        breach = GaugeMetricFamily(
            "shop_projection_slo_breached", "1 when the view's lag is past its SLO.",
            labels=["read_model", "segment"],
        )
        dead = GaugeMetricFamily(
            "shop_projection_dead_letters", "Outbox rows set aside as dead letters.",
            labels=["read_model"],
        )
        outbox = GaugeMetricFamily("shop_outbox_rows", "Rows in the outbox.")
        held = GaugeMetricFamily(
            "shop_outbox_horizon_held_seconds",
            "How long the oldest running transaction of this database has held the outbox "
            "horizon back (every view stands still behind it); 0 when none does.",
        )
        holder_info = GaugeMetricFamily(
            "shop_outbox_horizon_holder_seconds",
            "The transaction holding the outbox horizon past HORIZON_HOLD_ALERT_SECONDS, "
            "by backend pid, database, application and state: how long it has held it.",
            labels=["pid", "database", "application_name", "state"],
        )
        try:
            statuses = status.segment_statuses(rows_behind_cap=ROWS_BEHIND_CAP)
            size = status.outbox_size()
            holder = outbox_horizon.horizon_holder()
        except Exception:  # noqa: BLE001 - a scrape must answer even with the DB down
            logger.warning("metrics: PostgreSQL unavailable", exc_info=True)
            return
        seen = set()
        for s in statuses:
            labels = [s.projector, str(s.segment)]
            lag.add_metric(labels, s.lag_seconds)
            behind.add_metric(labels, s.rows_behind)
            breach.add_metric(labels, 1 if s.breached else 0)
            if s.projector not in seen:
                seen.add(s.projector)
                slo.add_metric([s.projector], s.slo_seconds)
                dead.add_metric([s.projector], s.dead_letters)
        outbox.add_metric([], size)
        age = holder.age_seconds if holder is not None and holder.age_seconds else 0.0
        held.add_metric([], age)
        if holder is not None and age > config.horizon_hold_alert_seconds():
            holder_info.add_metric(
                [str(holder.pid or ""), holder.database or "", holder.application_name or "",
                 holder.state or ""],
                age,
            )
        yield from (lag, behind, slo, breach, dead, outbox, held, holder_info)
