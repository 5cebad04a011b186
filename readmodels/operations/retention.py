"""Outbox retention: delete rows every projector has passed, once they are old enough.

A row is kept while any projector segment (of the current segment count) has not
passed it, while an unfinished rebuild has not caught up past it (it will need the row
when it resumes, however late), while a dead or retrying letter still points at it, or
while it is younger than the retention period. Deletes go in small batches so they
never hold long locks.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.utils import timezone

from orders.models import OutboxMessage
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
    table = OutboxMessage._meta.db_table
    deleted = 0
    for _ in range(max_batches):
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE position IN ("
                f"  SELECT position FROM {table} "
                "   WHERE (xid, position) <= (%s::text::xid8, %s) AND created_at < %s "
                "   AND NOT (position = ANY(%s)) ORDER BY xid, position LIMIT %s)",
                [str(horizon[0]), horizon[1], cutoff, kept, batch_size],
            )
            count = cursor.rowcount
        deleted += count
        if count < batch_size:
            break
    return deleted
