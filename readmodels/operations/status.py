"""Where each projector segment stands, measured against PostgreSQL (the operator's view).

Lag is the age of the oldest change not yet visible in the view (0 when caught up);
rows behind counts the outbox rows after the checkpoint, including rows of committed
transactions held back behind an older running one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count
from django.utils import timezone

from orders import outbox
from orders.outbox import Position, upkeep
from readmodels import config, projectors
from readmodels.models import Checkpoint, DeadLetter, DeadLetterStatus


@dataclass(frozen=True)
class SegmentStatus:
    projector: str
    segment: int
    segments: int
    xid: int
    position: int
    rows_behind: int
    lag_seconds: float
    slo_seconds: float
    last_success_at: datetime | None
    last_error: str
    last_error_at: datetime | None
    failures: int
    rows_projected: int
    dead_letters: int

    @property
    def position_label(self) -> str:
        if self.position == outbox.MAX_POSITION:
            return f"every transaction below {self.xid + 1}"
        return f"xid {self.xid}, row {self.position}"

    @property
    def breached(self) -> bool:
        return self.lag_seconds > self.slo_seconds

    @property
    def state(self) -> str:
        if self.breached:
            return "breach"
        if self.failures:
            return "failing"
        return "ok"


def _behind(projector, checkpoint: Checkpoint, cap: int | None) -> tuple[int, datetime | None]:
    return outbox.rows_behind(
        Position(checkpoint.xid, checkpoint.position),
        aggregate_types=list(projector.consumes),
        segment=(checkpoint.segment, checkpoint.segments),
        cap=cap,
    )


def segment_statuses(*, rows_behind_cap: int | None = None) -> list[SegmentStatus]:
    """One status per configured projector segment (a segment never run counts from zero).

    `rows_behind_cap` counts rows behind only up to that many (for scrapes: cheap however
    far behind a segment is); the lag is then the age of the oldest of those rows.
    """
    now = timezone.now()
    dead = {}
    for name, count in (
        DeadLetter.objects.filter(status=DeadLetterStatus.DEAD)
        .values_list("projector")
        .annotate(n=Count("id"))
    ):
        dead[name] = count
    out = []
    for name, projector in projectors.PROJECTORS.items():
        segments = config.segments(name)
        existing = {
            c.segment: c for c in Checkpoint.objects.filter(projector=name, segments=segments)
        }
        for segment in range(segments):
            checkpoint = existing.get(segment) or Checkpoint(
                projector=name, segment=segment, segments=segments
            )
            rows, oldest = _behind(projector, checkpoint, rows_behind_cap)
            out.append(
                SegmentStatus(
                    projector=name,
                    segment=segment,
                    segments=segments,
                    xid=checkpoint.xid,
                    position=checkpoint.position,
                    rows_behind=rows,
                    lag_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
                    slo_seconds=config.slo_seconds(name),
                    last_success_at=checkpoint.last_success_at,
                    last_error=checkpoint.last_error,
                    last_error_at=checkpoint.last_error_at,
                    failures=checkpoint.failures,
                    rows_projected=checkpoint.rows_projected,
                    dead_letters=dead.get(name, 0),
                )
            )
    return out


def outbox_size() -> int:
    return upkeep.size()


def horizon_hold() -> outbox.HorizonHolder | None:
    """The transaction holding the outbox horizon (every view stands still behind it),
    once it has held it past HORIZON_HOLD_ALERT_SECONDS; None otherwise."""
    holder = outbox.horizon_holder()
    if holder is None or holder.age_seconds is None:
        return None
    if holder.age_seconds <= config.horizon_hold_alert_seconds():
        return None
    return holder


def horizon_advice(holder: outbox.HorizonHolder) -> str:
    """What an operator reads: who holds the views, and how to let them go."""
    end = (
        f"end it (SELECT pg_terminate_backend({holder.pid}))" if holder.pid is not None
        else f"commit or roll back the prepared transaction ({holder.prepared_gid!r})"
        if holder.prepared_gid else "find it in pg_stat_activity"
    )
    return (
        f"The outbox horizon is held by {holder.describe()}: no view shows a change "
        f"committed after it began until it ends; {end}."
    )
