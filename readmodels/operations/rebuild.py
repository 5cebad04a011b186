"""Rebuild a read model from the write model with zero downtime.

There are no events to replay: every aggregate's current state is projected into a
new generation (a new versioned Elasticsearch index, or a new Redis key generation)
while the live one keeps serving. Changes committed meanwhile are caught up from the
outbox, from the position taken before the copy began.

The last step holds every segment lock of the live projector: it catches up once
more, switches the alias (or the Redis generation pointer) and marks the rebuild
done, and only then lets the live projector go on. So the live projector cannot have
written a change into the old generation, and published a checkpoint past it, that
the new generation lacks: right after the switch the view shows everything a
reader's token was told is visible. The locks are waited for with a bound; if the
last step fails (a long live run holds a lock, a store or PostgreSQL fails), the old
generation keeps serving and the rebuild schedules its own resumption. A crashed
copy resumes from its cursor. The old generation is dropped after a grace period.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager

from celery import current_app
from django.utils import timezone

from orders import outbox
from orders.outbox import Position
from readmodels import config, projectors
from readmodels.models import Checkpoint, Rebuild, RebuildStatus
from readmodels.pipeline import locks, progress
from readmodels.stores import StoreUnavailable

logger = logging.getLogger(__name__)

Progress = Callable[[Rebuild, float], None]
# Called with "caught_up" (locks held, about to switch) and "switched": a place for
# tests to put a real interleaving, and for operators' tooling to observe.
Step = Callable[[str, Rebuild], None]

UNFINISHED = [RebuildStatus.COPYING, RebuildStatus.CATCHING_UP, RebuildStatus.SWITCHED]

# A store that times out or restarts for a few seconds must not end a rebuild that has
# copied most of a large view: each batch is retried with backoff (about 15 s in all)
# before the rebuild stops, resumable from its cursor.
WRITE_ATTEMPTS = 6
FIRST_BACKOFF_SECONDS = 0.5
# A failed last step is tried again this long after, by a Celery task.
RESUME_AFTER_SECONDS = 5.0


class LiveProjectorBusy(Exception):
    """The live projector held a segment lock for longer than the rebuild may wait."""


class RebuildRunning(Exception):
    """Another process is rebuilding this read model right now."""


class CheckpointsAhead(Exception):
    """Live checkpoints lie beyond the outbox: PostgreSQL was restored into a new cluster."""


def _write(projector, docs, generation: int) -> dict:
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            return projector.write(docs, generation=generation)
        except StoreUnavailable as exc:
            if attempt == WRITE_ATTEMPTS:
                raise
            backoff = FIRST_BACKOFF_SECONDS * 2 ** (attempt - 1)
            logger.warning(
                "rebuild of %s: write failed (%s), retrying in %.1f s", projector.name, exc, backoff,
                extra={"read_model": projector.name, "attempt": attempt},
            )
            time.sleep(backoff)
    raise AssertionError("unreachable")


def _start(projector) -> Rebuild:
    live = projector.store.live_generation(projector.name)
    latest = Rebuild.objects.filter(projector=projector.name).order_by("-generation").first()
    target = max(live, latest.generation if latest else 0) + 1
    projector.store.create_generation(projector.name, target, projector.mappings)
    start = outbox.high_water_mark()
    total = sum(len(keys) for keys in projector.all_keys(5000))
    return Rebuild.objects.create(
        projector=projector.name,
        generation=target,
        previous_generation=live or None,
        start_xid=start.xid,
        start_position=start.position,
        caught_up_xid=start.xid,
        caught_up_position=start.position,
        total=total,
    )


def _catch_up(projector, rebuild: Rebuild, batch_size: int) -> int:
    """Project outbox rows after the rebuild's position into its generation."""
    rows = 0
    while True:
        position = Position(rebuild.caught_up_xid, rebuild.caught_up_position)
        batch = outbox.read_after(
            position, limit=batch_size, aggregate_types=list(projector.consumes)
        )
        if batch.rows:
            refused = _write(projector, projector.documents_for(batch.rows), rebuild.generation)
            if refused:
                raise RuntimeError(f"store refused {len(refused)} documents: {refused}")
            rows += len(batch.rows)
        rebuild.caught_up_xid = batch.checkpoint_after.xid
        rebuild.caught_up_position = batch.checkpoint_after.position
        rebuild.save(update_fields=["caught_up_xid", "caught_up_position", "updated_at"])
        if batch.complete:
            return rows


@contextmanager
def _live_projector_held(name: str, wait_seconds: float):
    """Hold every segment lock of the read model's live projector (a bounded wait)."""
    segments = config.segments(name)
    deadline = time.monotonic() + wait_seconds
    with ExitStack() as held:
        for segment in range(segments):
            remaining = max(0.001, deadline - time.monotonic())
            try:
                held.enter_context(locks.lock(locks.segment_key(name, segment, segments), remaining))
            except locks.LockWaitExpired as exc:
                raise LiveProjectorBusy(
                    f"{name} segment {segment}/{segments} stayed locked for {remaining:.0f} s"
                ) from exc
        yield


@contextmanager
def _only_rebuild_of(name: str):
    """One rebuild of a read model at a time, across processes and machines."""
    with locks.try_lock(locks.rebuild_key(name)) as acquired:
        if not acquired:
            raise RebuildRunning(f"a rebuild of {name} is running elsewhere")
        yield


def _live_checkpoints_covered(name: str, rebuild: Rebuild) -> None:
    caught_up = Position(rebuild.caught_up_xid, rebuild.caught_up_position)
    for checkpoint in Checkpoint.objects.filter(projector=name, segments=config.segments(name)):
        if not caught_up.covers(Position(checkpoint.xid, checkpoint.position)):
            raise CheckpointsAhead(
                f"{checkpoint} is beyond the outbox's horizon {caught_up}: PostgreSQL was "
                "restored into a new cluster; run `manage.py projections restore`"
            )


def _reset_checkpoints(projector, position: Position) -> None:
    """Start every live segment afresh from `position` (after a restore).

    Called with every segment lock held. The progress readers see is replaced too:
    the old one names positions of the old cluster.
    """
    name = projector.name
    segments = config.segments(name)
    Checkpoint.objects.filter(projector=name).delete()
    progress.forget(name)
    for segment in range(segments):
        Checkpoint.objects.create(
            projector=name, segment=segment, segments=segments,
            xid=position.xid, position=position.position, last_success_at=timezone.now(),
        )
        progress.publish(
            projector=name, segment=segment, segments=segments, checkpoint=position,
            cluster=outbox.cluster_id(),
            pending_since=outbox.first_pending_since(
                position, aggregate_types=list(projector.consumes), segment=(segment, segments)
            ),
        )


def _switch(projector, rebuild: Rebuild) -> None:
    # Idempotent: a resumed last step may switch to the same generation again.
    projector.store.switch_to(projector.name, rebuild.generation)


def _finish(projector, rebuild: Rebuild, *, batch_size: int, lock_wait_seconds: float,
            reset_checkpoints: bool, on_step: Step | None) -> None:
    # Most of the way without holding the live projector up.
    _catch_up(projector, rebuild, batch_size)
    with _live_projector_held(projector.name, lock_wait_seconds):
        # The live projector is stopped between runs: a complete catch-up now passes
        # every row it has written, and it writes nothing more until the switch is done.
        _catch_up(projector, rebuild, batch_size)
        if not reset_checkpoints:
            _live_checkpoints_covered(projector.name, rebuild)
        if on_step:
            on_step("caught_up", rebuild)
        _switch(projector, rebuild)
        if on_step:
            on_step("switched", rebuild)
        if reset_checkpoints:
            _reset_checkpoints(
                projector, Position(rebuild.caught_up_xid, rebuild.caught_up_position)
            )
        rebuild.status = RebuildStatus.DONE
        rebuild.finished_at = timezone.now()
        rebuild.error = ""
        rebuild.save(update_fields=["status", "finished_at", "error", "updated_at"])


def _schedule_resume(rebuild: Rebuild) -> None:
    try:
        # By name: the Celery tasks build on the operations, not the other way round.
        current_app.send_task(
            "readmodels.tasks.resume_rebuild", (rebuild.pk,), countdown=RESUME_AFTER_SECONDS
        )
    except Exception as exc:  # noqa: BLE001 - the operator sees the error on the rebuild
        logger.error("could not schedule the resumption of %s: %s", rebuild, exc)


def rebuild(
    name: str,
    *,
    batch_size: int = 1000,
    on_progress: Progress | None = None,
    grace_seconds: float | None = None,
    on_step: Step | None = None,
    lock_wait_seconds: float | None = None,
    reset_checkpoints: bool = False,
) -> Rebuild:
    """Rebuild (or resume rebuilding) a read model; return the finished Rebuild.

    `reset_checkpoints` (after a restore) starts the live projector afresh from where
    the new generation stands, instead of requiring the new generation to have
    passed the live checkpoints.
    """
    projector = projectors.get(name)
    if lock_wait_seconds is None:
        # A live run ends within its time budget; wait for a few of them.
        lock_wait_seconds = 3 * config.run_time_budget() + 5
    with _only_rebuild_of(name):
        current = Rebuild.objects.filter(projector=name, status__in=UNFINISHED).first()
        current = current or _start(projector)
        started = time.monotonic()
        copied_at_start = current.copied
        try:
            if current.status == RebuildStatus.COPYING:
                for keys in projector.all_keys(batch_size, after=current.cursor or None):
                    docs = projector.documents_by_key(keys)
                    refused = _write(projector, docs, current.generation)
                    if refused:
                        raise RuntimeError(f"store refused {len(refused)} documents: {refused}")
                    current.cursor = keys[-1]
                    current.copied += len(keys)
                    current.save(update_fields=["cursor", "copied", "updated_at"])
                    if on_progress:
                        elapsed = max(time.monotonic() - started, 1e-6)
                        on_progress(current, (current.copied - copied_at_start) / elapsed)
                current.status = RebuildStatus.CATCHING_UP
                current.save(update_fields=["status", "updated_at"])
            # SWITCHED is left by older versions of this code: finishing it is the same.
            _finish(
                projector, current, batch_size=batch_size, lock_wait_seconds=lock_wait_seconds,
                reset_checkpoints=reset_checkpoints, on_step=on_step,
            )
        except Exception as exc:
            current.error = f"{type(exc).__name__}: {exc}"[:4000]
            current.save(update_fields=["error", "updated_at"])
            if current.status != RebuildStatus.COPYING and not reset_checkpoints:
                # Copied: only the last step is left, and nothing an operator must
                # decide. The old generation serves (and is kept current) meanwhile.
                _schedule_resume(current)
            raise
    if current.previous_generation:
        grace = config.rebuild_grace_seconds() if grace_seconds is None else grace_seconds
        schedule_drop(name, current.previous_generation, grace)
    return current


def resume(rebuild_id: int) -> Rebuild | None:
    """Finish a rebuild whose last step failed; nothing if it is finished or running."""
    found = Rebuild.objects.filter(pk=rebuild_id, status__in=UNFINISHED).first()
    if found is None:
        return None
    try:
        return rebuild(found.projector)
    except RebuildRunning:
        return None


def schedule_drop(name: str, generation: int, grace_seconds: float) -> None:
    if grace_seconds <= 0:
        drop_generation(name, generation)
        return
    # By name: the Celery tasks build on the operations, not the other way round.
    current_app.send_task(
        "readmodels.tasks.drop_generation", (name, generation), countdown=grace_seconds
    )


def drop_generation(name: str, generation: int) -> None:
    """Delete an old generation, unless it is (again) the live one."""
    projector = projectors.get(name)
    if projector.store.live_generation(name) == generation:
        logger.warning("not dropping %s generation %s: it is live", name, generation)
        return
    projector.store.drop_generation(name, generation)
