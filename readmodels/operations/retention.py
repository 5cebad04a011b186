"""Outbox retention: delete rows every projector has passed, once they are old enough.

A row is kept while any projector segment (of the current segment count) has not
passed it; for a view whose store keeps its own progress report (Redis), while that
report has not (a store that came back older re-reads the rows after what it holds);
while an unfinished rebuild has not caught up past it (it will need the row when it
resumes, however late); while a dead or retrying letter still points at it; or while
it is younger than the retention period. Deletes go in small batches so they never
hold long locks.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from orders.outbox import Position, upkeep
from readmodels import config, projectors
from readmodels.models import (
    Checkpoint,
    DeadLetter,
    DeadLetterStatus,
    OutboxPurge,
    Rebuild,
    RebuildStatus,
)
from readmodels.pipeline import progress
from readmodels.stores import StoreUnavailable

# A rebuild in one of these states resumes from its caught-up position.
UNFINISHED = [RebuildStatus.COPYING, RebuildStatus.CATCHING_UP, RebuildStatus.SWITCHED]


def safe_horizon() -> tuple[int, int] | None:
    """The lowest position over every configured segment and unfinished rebuild.

    None if a segment never ran.
    """
    lowest = None
    for name in projectors.PROJECTORS:
        segments = config.segments(name)
        found = list(
            Checkpoint.objects.filter(projector=name, segments=segments).values_list(
                "segment", "xid", "position"
            )
        )
        if len(found) < segments:
            return None
        for _, xid, position in found:
            if lowest is None or (xid, position) < lowest:
                lowest = (xid, position)
    for xid, position in Rebuild.objects.filter(status__in=UNFINISHED).values_list(
        "caught_up_xid", "caught_up_position"
    ):
        if lowest is None or (xid, position) < lowest:
            lowest = (xid, position)
    for name, projector in projectors.PROJECTORS.items():
        if not projector.store.holds_progress:
            continue
        try:
            held = progress.state(name).position
        except StoreUnavailable:
            return None  # what the store holds is unknown: keep every row for now
        if held is None:
            return None
        if lowest is None or (held.xid, held.position) < lowest:
            lowest = (held.xid, held.position)
    return lowest


def purge(*, batch_size: int = 5000, max_batches: int = 100) -> int:
    horizon = safe_horizon()
    if horizon is None:
        return 0
    cutoff = timezone.now() - timedelta(days=config.outbox_retention_days())
    # Dead or still-retrying letters may need their row again; resolved or discarded
    # ones are done with it.
    kept = list(
        DeadLetter.objects.filter(
            status__in=[DeadLetterStatus.DEAD, DeadLetterStatus.RETRYING]
        ).values_list("outbox_position", flat=True)
    )
    deleted = upkeep.delete_passed(
        up_to=Position(*horizon), created_before=cutoff, keep=kept, batch_size=batch_size,
        max_batches=max_batches,
    )
    if deleted:
        _purged_through(Position(*horizon))
    return deleted


def _purged_through(position: Position) -> None:
    """Remember how far rows may be gone (forward only): a segment sent back before it
    cannot re-read them (readmodels.pipeline.runner)."""
    mark, _ = OutboxPurge.objects.get_or_create(pk=1)
    if not Position(mark.xid, mark.position).covers(position):
        OutboxPurge.objects.filter(pk=1).update(xid=position.xid, position=position.position)
