"""Outbox retention: delete rows every projector has passed, once they are old enough.

A row is kept while any projector segment (of the current segment count) has not
passed it, while an unfinished rebuild has not caught up past it (it will need the row
when it resumes, however late), while a dead or retrying letter still points at it, or
while it is younger than the retention period. Deletes go in small batches so they
never hold long locks.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from orders.outbox import Position, upkeep
from readmodels import config, projectors
from readmodels.models import Checkpoint, DeadLetter, DeadLetterStatus, Rebuild, RebuildStatus

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
    return upkeep.delete_passed(
        up_to=Position(*horizon), created_before=cutoff, keep=kept, batch_size=batch_size,
        max_batches=max_batches,
    )
