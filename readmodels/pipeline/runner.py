"""Run one segment of one projector: outbox rows after its checkpoint, into its store.

The loop, per batch: read committed rows in commit order (orders.outbox), load the
touched aggregates' current state, write version-gated documents, and only then move
the checkpoint. A PostgreSQL advisory lock makes sure a segment runs in one place at a
time, across every worker and machine. The store is written outside any database
transaction.

Failures: the row's own, or the store's.
- A store that does not answer or refuses writes as a whole (StoreUnavailable: the
  stores map Redis OOM/READONLY/MISCONF and Elasticsearch 403/404/429/5xx to it), or a
  PostgreSQL connection that fails, keeps the checkpoint and backs off; nothing is
  counted against the rows.
- Any other error is blamed on rows by trying them one by one. A row is only blamed
  when the store accepts other rows of the batch: if every row the store was asked to
  take was refused, the store is refusing, whatever the exception says, and the segment
  backs off as for an outage. A row whose own load fails (bad data, or a statement
  timeout on its load: SQLSTATE 57014) is blamed without that proof, since the store
  never saw it. A blamed row is retried a bounded number of times with a growing
  backoff, then set aside as a dead letter and the segment moves on.
"""

from __future__ import annotations

import logging
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.dispatch import Signal
from django.utils import timezone

from orders import outbox
from orders.outbox import OutboxRow, Position
from readmodels import config, metrics
from readmodels.models import Checkpoint, DeadLetter, DeadLetterStatus
from readmodels.pipeline import progress
from readmodels.projectors import Projector
from readmodels.stores import StoreSlow, StoreUnavailable

logger = logging.getLogger(__name__)

# A store that is down is tried again at most this long after its last failure: the
# try costs one refused connection, and once the store is back, this is the lag that
# remains on top of the catch-up (with a 30 s cap, the fault suite's projectors first
# tried an Elasticsearch that was back after a 10 s outage 13-16 s later).
MAX_BACKOFF_SECONDS = 5.0
# A store that times out is busy, not down: this many timeouts in a row are retried at
# once (the timeout itself paces them); only a store that keeps timing out after that
# is treated as unreachable and backed off.
SLOW_ATTEMPTS_BEFORE_BACKOFF = 3
# After a timeout the next batch is halved (a bulk too big to finish in time must not
# time out forever); every success doubles it back towards the configured size.
MIN_BATCH_AFTER_TIMEOUT = 10
# Failures of the servers, not of the rows: never counted against a row (but see
# _outage: a statement timeout is an OperationalError too, and it is a row's).
INFRASTRUCTURE_ERRORS = (StoreUnavailable, OperationalError, InterfaceError)
QUERY_CANCELED = "57014"  # statement_timeout, or a cancel request
# Rows tried one by one, all refused by the store, before the store is taken to be
# refusing writes as a whole (a whole batch of bad rows is far less likely).
STORE_PROOF_ATTEMPTS = 10


# Sent with (projector, rows) once a batch has been read, before anything of it is
# written: where the fault tests cut a store while a batch is in flight.
batch_read = Signal()


class RowsRefused(Exception):
    """The store refused some documents for reasons of their own."""


class StoreRefused(Exception):
    """The store's write raised an error of no known kind: the row's, or the store's."""


def _outage(exc: BaseException) -> bool:
    """True for failures of a server as a whole (never counted against a row)."""
    if isinstance(exc, OperationalError) and _sqlstate(exc) == QUERY_CANCELED:
        # The statement ran too long: the load of these rows, not the connection.
        return False
    return isinstance(exc, INFRASTRUCTURE_ERRORS)


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc.__cause__, "sqlstate", None) or getattr(exc, "sqlstate", None)


class RetryLater(Exception):
    """A row failed and has attempts left: the segment stops before it for now."""


@dataclass
class RunResult:
    locked_out: bool = False
    backing_off: bool = False
    rows: int = 0
    batches: int = 0
    complete: bool = False
    dead_lettered: int = 0


def lock_key(projector: str, segment: int, segments: int) -> tuple[int, int]:
    # Two int4 keys: a stable hash of the projector's name, and the segment.
    return zlib.crc32(projector.encode()) & 0x7FFFFFFF, segments * 1000 + segment


@contextmanager
def segment_lock(projector: str, segment: int, segments: int):
    """Hold the segment's session-level advisory lock, or yield False if another has it."""
    a, b = lock_key(projector, segment, segments)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [a, b])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [a, b])
            except Exception:
                # A dead connection has released the lock with the session.
                connection.close()


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


def _lock_and_read_checkpoint(projector: str, segment: int, segments: int) -> Checkpoint | None:
    """Take the segment's advisory lock and read its checkpoint in one round trip.

    Return None when another session holds the lock. The checkpoint is read with the
    statement's snapshot, taken just before the lock: a holder that saved and released
    in between leaves this run an older position, which only means re-writing a few
    documents (version-gated, so no step backwards), and _save_progress never moves a
    checkpoint back.
    """
    a, b = lock_key(projector, segment, segments)
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
def _locked_checkpoint(projector: str, segment: int, segments: int):
    """Yield the segment's checkpoint with its lock held, or None if another holds it."""
    checkpoint = _lock_and_read_checkpoint(projector, segment, segments)
    try:
        yield checkpoint
    finally:
        if checkpoint is not None:
            _unlock(projector, segment, segments)


def _unlock(projector: str, segment: int, segments: int) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)",
                           list(lock_key(projector, segment, segments)))
    except Exception:
        # A dead connection has released the lock with the session.
        connection.close()


# Per process, per segment: the batch size to use next (halved after a store timeout).
_batch_limits: dict[tuple[str, int, int], int] = {}
# Per process, per read model: when the store was last checked for lost documents.
_store_checked_at: dict[str, float] = {}


def _pending_since(projector: Projector, position: Position, segment, segments):
    """Creation time of the first row after `position` (committed, maybe held back)."""
    return outbox.first_pending_since(
        position, aggregate_types=list(projector.consumes), segment=(segment, segments)
    )


def _write(projector: Projector, rows: list[OutboxRow], *, refresh: bool = True) -> None:
    """Load and write the rows' documents (in bounded lists); refresh once at the end.

    Errors of the load propagate as they are; errors of the store's write that are not
    an outage come as StoreRefused or RowsRefused, so callers know the store saw them.
    """
    wrote = refreshed = False
    batches = iter(projector.document_batches(rows, config.batch_size()))
    docs = next(batches, None)
    while docs is not None:
        following = next(batches, None)
        # The last write refreshes as it writes: one round trip less per batch.
        last = refresh and following is None and bool(docs)
        try:
            refused = projector.write(docs, refresh=last)
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception as exc:
            raise StoreRefused(f"{type(exc).__name__}: {exc}") from exc
        wrote, refreshed = wrote or bool(docs), last
        if refused:
            key, reason = next(iter(refused.items()))
            raise RowsRefused(f"{len(refused)} document(s) refused, e.g. {key}: {reason}")
        docs = following
    if refresh and wrote and not refreshed:
        projector.refresh()
    # Visible now (Elasticsearch was refreshed by the write): measure from each row's
    # creation, which includes any time the row waited behind an older transaction.
    now = timezone.now()
    histogram = metrics.COMMIT_TO_VISIBLE.labels(projector.name)
    for row in rows:
        histogram.observe(max(0.0, (now - row.created_at).total_seconds()))
    metrics.ROWS_PROJECTED.labels(projector.name).inc(len(rows))
    logger.info(
        "projected %s outbox rows into %s",
        len(rows),
        projector.name,
        extra={
            "read_model": projector.name,
            "positions": [rows[0].position, rows[-1].position],
            # Follows each command (its request) into the view that now shows it.
            "request_ids": sorted({row.request_id for row in rows if row.request_id}),
        },
    )


def _record_failure(projector: Projector, row: OutboxRow, error: Exception) -> DeadLetter:
    letter, created = DeadLetter.objects.get_or_create(
        projector=projector.name,
        outbox_position=row.position,
        defaults={
            "outbox_xid": row.xid,
            "aggregate_type": row.aggregate_type,
            "aggregate_id": row.aggregate_id,
            "partition_key": row.partition_key,
            "event_type": row.event_type,
            "error": f"{type(error).__name__}: {error}"[:4000],
        },
    )
    if not created:
        letter.attempts += 1
        letter.error = f"{type(error).__name__}: {error}"[:4000]
    if letter.attempts >= config.poison_max_attempts():
        letter.status = DeadLetterStatus.DEAD
    letter.save()
    return letter


def _project_one_by_one(projector: Projector, rows: list[OutboxRow], result: RunResult):
    """Find the rows to blame; return how far the segment may move (or raise RetryLater).

    Raises StoreUnavailable when the store refuses rows it is asked to take and accepts
    none: then no row is to blame. Elasticsearch is refreshed once, after the pass.
    """
    dead = set(
        DeadLetter.objects.filter(
            projector=projector.name,
            outbox_position__in=[r.position for r in rows],
            status__in=[DeadLetterStatus.DEAD, DeadLetterStatus.DISCARDED],
        ).values_list("outbox_position", flat=True)
    )
    written: set[int] = set()  # positions already written during this pass
    try:
        done = _one_by_one_pass(projector, rows, dead, written, result)
    except RetryLater:
        if written:
            projector.refresh()  # the rows before the failing one are about to be passed
        raise
    if written:
        projector.refresh()
    return done


def _one_by_one_pass(projector, rows, dead, written, result) -> Position | None:
    done: Position | None = None
    accepted = False  # the store took at least one row of this batch
    for index, row in enumerate(rows):
        if row.position not in dead and row.position not in written:
            try:
                _write(projector, [row], refresh=False)
                written.add(row.position)
                accepted = True
            except Exception as exc:
                if _outage(exc):
                    raise
                if isinstance(exc, RowsRefused | StoreRefused) and not accepted:
                    # The store refused this row and has taken none yet: is it the row
                    # or the store? Only another row taken says it is the row.
                    accepted = _store_takes_another(projector, rows[index + 1 :], dead, written)
                    if not accepted:
                        raise StoreUnavailable(
                            f"{projector.name}: the store refused every row it was asked "
                            f"to take, e.g. outbox row {row.position}: {exc}"
                        ) from exc
                letter = _record_failure(projector, row, exc)
                if letter.status != DeadLetterStatus.DEAD:
                    logger.warning(
                        "projector %s failed on outbox row %s (attempt %s): %s",
                        projector.name, row.position, letter.attempts, exc,
                    )
                    raise RetryLater(exc, done) from exc
                logger.error(
                    "projector %s set outbox row %s aside as a dead letter after %s attempts: %s",
                    projector.name, row.position, letter.attempts, exc,
                )
                result.dead_lettered += 1
                metrics.PROJECTION_FAILURES.labels(projector.name, "dead_letter").inc()
        done = row.commit_position
    return done


def _store_takes_another(projector, rows, dead, written) -> bool:
    """Try the rows after a refused one until the store takes one (True) or refuses
    STORE_PROOF_ATTEMPTS of them, or all (False). Writing ahead of the checkpoint is
    safe: writes are version-gated, and the rows are written again in their turn."""
    refused = 0
    for row in rows:
        if row.position in dead or row.position in written:
            continue
        try:
            _write(projector, [row], refresh=False)
        except Exception as exc:
            if _outage(exc):
                raise
            if isinstance(exc, RowsRefused | StoreRefused):
                refused += 1
                if refused >= STORE_PROOF_ATTEMPTS:
                    return False
            continue  # a row that fails its own load proves nothing about the store
        written.add(row.position)
        return True
    return False


def _save_progress(checkpoint: Checkpoint, position: Position, rows: int) -> None:
    # Never backwards: a run that read the checkpoint just before another holder moved
    # it (see _lock_and_read_checkpoint) must not undo that holder's progress.
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


def _save_failure(checkpoint: Checkpoint, error: Exception) -> None:
    failures = checkpoint.failures + 1
    # The store may have lost its documents while it failed: look at the next run.
    _store_checked_at.pop(checkpoint.projector, None)
    now = timezone.now()
    if isinstance(error, StoreSlow):
        key = (checkpoint.projector, checkpoint.segment, checkpoint.segments)
        limit = _batch_limits.get(key, config.batch_size())
        _batch_limits[key] = max(MIN_BATCH_AFTER_TIMEOUT, limit // 2)
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


_UNKNOWN = object()


def _announce(projector: Projector, checkpoint: Checkpoint, segment: int, segments: int,
              pending_since=_UNKNOWN) -> None:
    """Publish the segment's checkpoint; `pending_since` as read with the batch, if known."""
    position = Position(checkpoint.xid, checkpoint.position)
    if pending_since is _UNKNOWN:
        pending_since = _pending_since(projector, position, segment, segments)
    try:
        progress.publish(
            projector=projector.name,
            segment=segment,
            segments=segments,
            checkpoint=position,
            pending_since=pending_since,
        )
    except StoreUnavailable as exc:
        # Readers fall back on their own; the next batch or sweep announces again.
        logger.warning("could not announce %s progress: %s", projector.name, exc)


def _heal_if_store_lost(projector: Projector, checkpoint: Checkpoint) -> None:
    """Re-project every aggregate when the store has lost the view, then carry on.

    A Redis restarted without persistence (or a deleted index) holds none of the
    documents the checkpoint says are there, and the outbox may no longer hold the
    rows that made them. So project every aggregate's current state (version-gated,
    like any write), then continue from the checkpoint. Segment 0 does it for the
    whole view.
    """
    if (checkpoint.xid, checkpoint.position) == (0, 0):
        projector.mark_store_populated()
        return
    # A store round trip per run is a fixed cost paid by every tiny batch under load, so
    # look at most once in a while (and at once after a failure of the store). Documents
    # written to an emptied store in between are re-projected with the rest. How often
    # is the store's own matter (ViewStore.lost_check_sweeps).
    checked = _store_checked_at.get(projector.name)
    every = config.sweep_interval() * projector.store.lost_check_sweeps
    if checked is not None and time.monotonic() - checked < every:
        return
    lost = projector.store_lost_data()
    _store_checked_at[projector.name] = time.monotonic()
    if not lost:
        return
    logger.warning(
        "the %s store has lost its documents; re-projecting every aggregate", projector.name
    )
    projector.store.make_ready(projector.name, projector.mappings)
    healed = 0
    for keys in projector.all_keys(config.batch_size()):
        projector.write(projector.documents_by_key(keys))
        healed += len(keys)
    projector.mark_store_populated()
    logger.warning("re-projected %s documents into %s", healed, projector.name)


def run_segment(
    projector: Projector,
    segment: int = 0,
    segments: int | None = None,
    *,
    time_budget: float | None = None,
    batch_size: int | None = None,
    ignore_backoff: bool = False,
) -> RunResult:
    """Project rows after the segment's checkpoint until caught up or out of time."""
    segments = segments or config.segments(projector.name)
    time_budget = config.run_time_budget() if time_budget is None else time_budget
    key = (projector.name, segment, segments)
    adaptive = batch_size is None
    result = RunResult()
    with _locked_checkpoint(projector.name, segment, segments) as checkpoint:
        if checkpoint is None:
            result.locked_out = True
            return result
        if (
            not ignore_backoff
            and checkpoint.retry_after is not None
            and checkpoint.retry_after > timezone.now()
        ):
            result.backing_off = True
            return result
        if segment == 0:
            try:
                _heal_if_store_lost(projector, checkpoint)
            except StoreUnavailable as exc:
                # The store's first call of the run: a failure like a batch's (recorded,
                # backed off), not one that leaves the checkpoint looking healthy.
                metrics.PROJECTION_FAILURES.labels(projector.name, "store_unavailable").inc()
                _save_failure(checkpoint, exc)
                _announce(projector, checkpoint, segment, segments)
                raise
        started = time.monotonic()
        had_errors = checkpoint.failures > 0
        while True:
            if adaptive:
                batch_size = _batch_limits.get(key, config.batch_size())
            position = Position(checkpoint.xid, checkpoint.position)
            batch = outbox.read_after(
                position,
                limit=batch_size,
                aggregate_types=list(projector.consumes),
                segment=(segment, segments) if segments > 1 else None,
            )
            reached = batch.checkpoint_after
            if batch.rows:
                batch_read.send(sender=run_segment, projector=projector, rows=batch.rows)
            try:
                if batch.rows:
                    try:
                        _write(projector, batch.rows)
                    except Exception as exc:
                        if _outage(exc):
                            raise
                        logger.warning(
                            "projector %s batch failed; trying its %s rows one by one",
                            projector.name, len(batch.rows), exc_info=True,
                        )
                        done = _project_one_by_one(projector, batch.rows, result)
                        reached = reached if batch.complete else done
                    if had_errors:
                        DeadLetter.objects.filter(
                            projector=projector.name,
                            status=DeadLetterStatus.RETRYING,
                            outbox_position__in=[r.position for r in batch.rows],
                        ).update(status=DeadLetterStatus.RESOLVED)
            except (StoreUnavailable, RetryLater) as exc:
                kind = "store_unavailable" if isinstance(exc, StoreUnavailable) else "row_failed"
                metrics.PROJECTION_FAILURES.labels(projector.name, kind).inc()
                if isinstance(exc, RetryLater) and exc.args[1] is not None:
                    _save_progress(checkpoint, exc.args[1], 0)
                _save_failure(checkpoint, exc)
                _announce(projector, checkpoint, segment, segments)
                raise
            except DatabaseError as exc:
                # PostgreSQL failed under us (not a row's statement timeout: that one is
                # a RetryLater above). Back off like any outage if it can still be
                # recorded; if it cannot, the task closes the connection and the sweep
                # tries again.
                metrics.PROJECTION_FAILURES.labels(projector.name, "database").inc()
                try:
                    _save_failure(checkpoint, exc)
                except DatabaseError:
                    pass
                raise
            if reached != position or had_errors:
                _save_progress(checkpoint, reached, len(batch.rows))
                had_errors = False
            if adaptive and key in _batch_limits:
                _batch_limits[key] = min(config.batch_size(), 2 * batch_size)
            _announce(projector, checkpoint, segment, segments,
                      batch.pending_since if reached == batch.checkpoint_after else _UNKNOWN)
            result.rows += len(batch.rows)
            result.batches += 1
            if batch.complete:
                result.complete = True
                return result
            if time.monotonic() - started > time_budget:
                return result
