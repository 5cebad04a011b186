"""Lag samples for the admin's lag chart, and a warning in the log on an SLO breach.

The sampler runs in a thread of Celery beat's own process (shop.celery starts it), not
as a task: a task runs on the workers being measured, so a stalled worker would
silence the very chart that should show it stalling. Lag is measured against
PostgreSQL (readmodels.operations.status), so it grows while the workers are stopped.
When beat itself is down no samples are taken, and the chart shows that as a gap.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from django.db import close_old_connections, connection
from django.utils import timezone

from readmodels import config
from readmodels.models import LagSample
from readmodels.operations import status

logger = logging.getLogger(__name__)

KEEP = timedelta(days=1)


def record() -> None:
    """Sample each segment's lag now; drop samples older than a day."""
    now = timezone.now()
    rows = status.segment_statuses()
    LagSample.objects.bulk_create(
        [
            LagSample(
                projector=r.projector, segment=r.segment, at=now,
                lag_seconds=r.lag_seconds, rows_behind=r.rows_behind,
            )
            for r in rows
        ]
    )
    for r in rows:
        if r.breached:
            logger.warning(
                "lag SLO breached: %s[%s] is %.1f s behind (SLO %.1f s, %s rows behind)",
                r.projector, r.segment, r.lag_seconds, r.slo_seconds, r.rows_behind,
            )
    LagSample.objects.filter(at__lt=now - KEEP).delete()


class Sampler:
    """record() every LAG_SAMPLE_SECONDS in a daemon thread, until stop()."""

    def __init__(self, interval: float | None = None):
        self.interval = interval if interval is not None else config.lag_sample_seconds()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)

    def start(self) -> Sampler:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(self.interval + 30)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            # As Django does per request: a connection PostgreSQL dropped is replaced.
            close_old_connections()
            try:
                record()
            except Exception as exc:  # noqa: BLE001 - a missed sample is a gap, beat goes on
                logger.warning("lag sample not taken: %r", exc)
                connection.close()
        connection.close()


def sample_in_this_process() -> Sampler:
    """Start sampling in this process (beat's); the thread ends with the process."""
    return Sampler().start()
