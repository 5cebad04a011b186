"""Run one segment of one projector: outbox rows after its checkpoint, into its store.

The loop, per batch: read committed rows in commit order (orders.outbox), write their
documents (readmodels.pipeline.writing), and only then move the checkpoint
(readmodels.pipeline.checkpoints) and publish it to readers (readmodels.pipeline.progress).
The segment's advisory lock makes sure it runs in one place at a time, across every
worker and machine.

Failures (readmodels.pipeline.failures): an outage of a store or of PostgreSQL keeps
the checkpoint and backs off; any other failure of a batch is blamed on its rows one
by one (readmodels.pipeline.blame).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.db import DatabaseError
from django.dispatch import Signal
from django.utils import timezone

from orders import outbox
from orders.outbox import Position
from readmodels import config, metrics
from readmodels.models import Checkpoint, DeadLetter, DeadLetterStatus, OutboxPurge
from readmodels.pipeline import checkpoints, progress, store_loss
from readmodels.pipeline.blame import project_one_by_one
from readmodels.pipeline.failures import RetryLater, is_outage
from readmodels.pipeline.writing import write_rows
from readmodels.projectors import Projector
from readmodels.stores import StoreSlow, StoreUnavailable

logger = logging.getLogger(__name__)

# After a timeout the next batch is halved (a bulk too big to finish in time must not
# time out forever); every success doubles it back towards the configured size.
MIN_BATCH_AFTER_TIMEOUT = 10

# Sent with (projector, rows) once a batch has been read, before anything of it is
# written: where the fault tests cut a store while a batch is in flight.
batch_read = Signal()


@dataclass
class RunResult:
    locked_out: bool = False
    backing_off: bool = False
    rows: int = 0
    batches: int = 0
    complete: bool = False
    dead_lettered: int = 0


# Per process, per segment: the batch size to use next (halved after a store timeout).
_batch_limits: dict[tuple[str, int, int], int] = {}


def _record_failure(checkpoint: Checkpoint, error: Exception) -> None:
    store_loss.look_again_soon(checkpoint.projector)
    if isinstance(error, StoreSlow):
        key = (checkpoint.projector, checkpoint.segment, checkpoint.segments)
        limit = _batch_limits.get(key, config.batch_size())
        _batch_limits[key] = max(MIN_BATCH_AFTER_TIMEOUT, limit // 2)
    checkpoints.save_failure(checkpoint, error)


_UNKNOWN = object()


def publish_progress(projector: Projector, checkpoint: Checkpoint, segment: int, segments: int,
                     pending_since=_UNKNOWN, *,
                     built_on: Position | None = None) -> progress.Published | None:
    """Publish the segment's checkpoint; `pending_since` as read with the batch, if known.

    `built_on`: where the batch began, which a store that keeps the report itself must
    hold (default: the checkpoint). None when Redis did not take the report.
    """
    position = Position(checkpoint.xid, checkpoint.position)
    if pending_since is _UNKNOWN:
        pending_since = outbox.first_pending_since(
            position, aggregate_types=list(projector.consumes), segment=(segment, segments)
        )
    try:
        return progress.publish(
            projector=projector.name,
            segment=segment,
            segments=segments,
            checkpoint=position,
            pending_since=pending_since,
            store_holds=(built_on or position) if projector.store.holds_progress else None,
            cluster=outbox.cluster_id(),
        )
    except StoreUnavailable as exc:
        # Readers fall back on their own; the next batch or sweep publishes again.
        logger.warning("could not announce %s progress: %s", projector.name, exc)
        return None


def _back_to_what_the_store_holds(projector: Projector, checkpoint: Checkpoint,
                                  published: progress.Published, segment: int,
                                  segments: int) -> None:
    """The store came back older than the checkpoint (a crash lost its last second, a
    restart from an older snapshot, a failover to a lagging replica): go back to what it
    holds and project from there. If it holds nothing of its own, or rows after what it
    holds may be gone from the outbox (retention), project every aggregate's current
    state instead, which covers every row up to the checkpoint."""
    stored = published.stored
    purged = OutboxPurge.objects.first()
    if stored is None or (purged is not None and not stored.covers(Position(purged.xid, purged.position))):
        logger.warning(
            "the %s store holds no report of segment %s (or one older than the outbox "
            "keeps); re-projecting every aggregate", projector.name, segment,
        )
        store_loss.project_everything(projector)
        publish_progress(projector, checkpoint, segment, segments, built_on=Position.start())
        return
    logger.warning(
        "the %s store came back older than segment %s's checkpoint: going back from "
        "(%s, %s) to (%s, %s)", projector.name, segment, checkpoint.xid, checkpoint.position,
        stored.xid, stored.position,
    )
    checkpoints.rewind(checkpoint, stored)


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
    with checkpoints.locked(projector.name, segment, segments) as checkpoint:
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
                store_loss.heal_if_store_lost(projector, checkpoint)
            except StoreUnavailable as exc:
                # The store's first call of the run: a failure like a batch's (recorded,
                # backed off), not one that leaves the checkpoint looking healthy.
                metrics.PROJECTION_FAILURES.labels(projector.name, "store_unavailable").inc()
                _record_failure(checkpoint, exc)
                publish_progress(projector, checkpoint, segment, segments)
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
                        write_rows(projector, batch.rows)
                    except Exception as exc:
                        if is_outage(exc):
                            raise
                        logger.warning(
                            "projector %s batch failed; trying its %s rows one by one",
                            projector.name, len(batch.rows), exc_info=True,
                        )
                        outcome = project_one_by_one(projector, batch.rows)
                        result.dead_lettered += outcome.dead_lettered
                        reached = reached if batch.complete else outcome.passed
                    if had_errors:
                        DeadLetter.objects.filter(
                            projector=projector.name,
                            status=DeadLetterStatus.RETRYING,
                            outbox_position__in=[r.position for r in batch.rows],
                        ).update(status=DeadLetterStatus.RESOLVED)
            except (StoreUnavailable, RetryLater) as exc:
                kind = "store_unavailable" if isinstance(exc, StoreUnavailable) else "row_failed"
                metrics.PROJECTION_FAILURES.labels(projector.name, kind).inc()
                if isinstance(exc, RetryLater) and exc.passed is not None:
                    checkpoints.save_progress(checkpoint, exc.passed, 0)
                _record_failure(checkpoint, exc)
                publish_progress(projector, checkpoint, segment, segments)
                raise
            except DatabaseError as exc:
                # PostgreSQL failed under us (not a row's statement timeout: that one is
                # a RetryLater above). Back off like any outage if it can still be
                # recorded; if it cannot, the task closes the connection and the sweep
                # tries again.
                metrics.PROJECTION_FAILURES.labels(projector.name, "database").inc()
                try:
                    _record_failure(checkpoint, exc)
                except DatabaseError:
                    pass
                raise
            if reached != position or had_errors:
                checkpoints.save_progress(checkpoint, reached, len(batch.rows))
                had_errors = False
            if adaptive and key in _batch_limits:
                _batch_limits[key] = min(config.batch_size(), 2 * batch_size)
            published = publish_progress(
                projector, checkpoint, segment, segments,
                batch.pending_since if reached == batch.checkpoint_after else _UNKNOWN,
                built_on=position,
            )
            result.rows += len(batch.rows)
            result.batches += 1
            if published is not None and published.outcome in ("behind", "lost"):
                _back_to_what_the_store_holds(projector, checkpoint, published, segment, segments)
            elif batch.complete:
                result.complete = True
                return result
            if time.monotonic() - started > time_budget:
                return result
