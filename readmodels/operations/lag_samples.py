"""Lag samples for the admin's lag chart, and a warning in the log on an SLO breach."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

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
