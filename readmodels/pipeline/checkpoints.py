"""A projector segment's checkpoint: read under the segment's lock, moved only forward,
and its failures recorded with the time it may try again.

Every outbox row at or before the checkpoint, in commit order, is in the view. The
checkpoint moves only after the view holds the rows, and never backwards.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from orders import outbox
from orders.outbox import Position
from readmodels.models import Checkpoint
from readmodels.pipeline import locks
from readmodels.projectors import Projector
from readmodels.stores import StoreSlow

# A store that is down is tried again at most this long after its last failure: the
# try costs one refused connection, and once the store is back, this is the lag that
# remains on top of the catch-up (with a 30 s cap, the fault suite's projectors first
# tried an Elasticsearch that was back after a 10 s outage 13-16 s later).
MAX_BACKOFF_SECONDS = 5.0
# A store that times out is busy, not down: this many timeouts in a row are retried at
# once (the timeout itself paces them); only a store that keeps timing out after that
# is treated as unreachable and backed off.
SLOW_ATTEMPTS_BEFORE_BACKOFF = 3


def checkpoint_for(projector: str, segment: int, segments: int) -> Checkpoint:
    checkpoint, _ = Checkpoint.objects.get_or_create(
        projector=projector, segment=segment, segments=segments
    )
    return checkpoint


def rows_waiting(projector: Projector, segment: int, segments: int) -> bool:
    """Whether committed rows wait for this segment now: a look, no lock and no write.

    A segment backing off after a store's failure has none (the sweep retries it after
    the backoff); one that never ran has (a run creates its checkpoint).
    """
    found = (
        Checkpoint.objects.filter(projector=projector.name, segment=segment, segments=segments)
        .values_list("xid", "position", "retry_after")
        .first()
    )
    if found is None:
        return True
    xid, position, retry_after = found
    if retry_after is not None and retry_after > timezone.now():
        return False
    batch = outbox.read_after(
        Position(xid, position),
        limit=1,
        aggregate_types=list(projector.consumes),
        segment=(segment, segments) if segments > 1 else None,
    )
    return bool(batch.rows)


def _lock_and_read(projector: str, segment: int, segments: int) -> Checkpoint | None:
    """Take the segment's advisory lock and read its checkpoint in one round trip.

    Return None when another session holds the lock. The checkpoint is read with the
    statement's snapshot, taken just before the lock: a holder that saved and released
    in between leaves this run an older position, which only means re-writing a few
    documents (version-gated, so no step backwards), and save_progress never moves a
    checkpoint back.
    """
    a, b = locks.segment_key(projector, segment, segments)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_lock(%s, %s), c.id, c.xid, c.position, c.failures, "
            f"c.retry_after FROM (SELECT 1) AS one LEFT JOIN {Checkpoint._meta.db_table} c "
            "ON c.projector = %s AND c.segment = %s AND c.segments = %s",
            [a, b, projector, segment, segments],
        )
        acquired, pk, xid, position, failures, retry_after = cursor.fetchone()
    if not acquired:
        return None
    if pk is None:
        return checkpoint_for(projector, segment, segments)
    return Checkpoint(
        pk=pk, projector=projector, segment=segment, segments=segments, xid=xid,
        position=position, failures=failures, retry_after=retry_after,
    )


@contextmanager
def locked(projector: str, segment: int, segments: int):
    """Yield the segment's checkpoint with its lock held, or None if another holds it."""
    checkpoint = _lock_and_read(projector, segment, segments)
    try:
        yield checkpoint
    finally:
        if checkpoint is not None:
            locks.unlock(locks.segment_key(projector, segment, segments))


def save_progress(checkpoint: Checkpoint, position: Position, rows: int) -> None:
    # Never backwards: a run that read the checkpoint just before another holder moved
    # it (see _lock_and_read) must not undo that holder's progress.
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Checkpoint._meta.db_table} SET xid = %s, position = %s, "
            "rows_projected = rows_projected + %s, last_success_at = statement_timestamp(), "
            "failures = 0, retry_after = NULL, updated_at = statement_timestamp() "
            "WHERE id = %s AND (xid, position) <= (%s, %s)",
            [position.xid, position.position, rows, checkpoint.pk,
             position.xid, position.position],
        )
    checkpoint.xid, checkpoint.position = position.xid, position.position
    checkpoint.failures = 0


def rewind(checkpoint: Checkpoint, position: Position) -> None:
    """Move the checkpoint back to what the store holds (its store came back older).

    The only step backwards a checkpoint takes, with the segment's lock held: the rows
    after `position` are read and written again.
    """
    Checkpoint.objects.filter(pk=checkpoint.pk).update(
        xid=position.xid, position=position.position, updated_at=timezone.now()
    )
    checkpoint.xid, checkpoint.position = position.xid, position.position


def save_failure(checkpoint: Checkpoint, error: Exception) -> None:
    """Record a failed run and when the segment may try again (a growing backoff)."""
    failures = checkpoint.failures + 1
    now = timezone.now()
    if isinstance(error, StoreSlow) and failures <= SLOW_ATTEMPTS_BEFORE_BACKOFF:
        # Busy, not down: the rows waiting meanwhile go in the next batch, at once.
        retry_after = None
    else:
        slow = SLOW_ATTEMPTS_BEFORE_BACKOFF if isinstance(error, StoreSlow) else 0
        backoff = min(MAX_BACKOFF_SECONDS, 0.1 * 2 ** min(failures - slow, 16))
        retry_after = now + timedelta(seconds=backoff)
    Checkpoint.objects.filter(pk=checkpoint.pk).update(
        failures=failures,
        retry_after=retry_after,
        last_error=f"{type(error).__name__}: {error}"[:4000],
        last_error_at=now,
        updated_at=now,
    )
    checkpoint.failures = failures
