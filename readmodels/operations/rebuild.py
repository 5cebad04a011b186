"""Rebuild a read model from the write model with zero downtime.

There are no events to replay: every aggregate's current state is projected into a
new generation (a new versioned Elasticsearch index, or a new Redis key generation)
while the live one keeps serving. Changes committed meanwhile are caught up from the
outbox, from the position taken before the copy began. Then the alias (or the Redis
generation pointer) is switched in one atomic step, caught up once more for rows the
live projector wrote to the old generation during the switch, and the old generation
is dropped after a grace period. A crashed rebuild resumes from its cursor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from celery import current_app
from django.utils import timezone

from orders import outbox
from orders.outbox import Position
from readmodels import config, projectors
from readmodels.models import Rebuild, RebuildStatus
from readmodels.stores import StoreUnavailable, es, redis_store

logger = logging.getLogger(__name__)

Progress = Callable[[Rebuild, float], None]

# A store that times out or restarts for a few seconds must not end a rebuild that has
# copied most of a large view: each batch is retried with backoff (about 15 s in all)
# before the rebuild stops, resumable from its cursor.
WRITE_ATTEMPTS = 6
FIRST_BACKOFF_SECONDS = 0.5


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


def _live_generation(projector) -> int:
    if projector.store == "elasticsearch":
        index = es.current_index(projector.name)
        return es.generation_of(index) if index else 0
    return redis_store.generation(projector.name)


def _start(projector) -> Rebuild:
    live = _live_generation(projector)
    latest = Rebuild.objects.filter(projector=projector.name).order_by("-generation").first()
    target = max(live, latest.generation if latest else 0) + 1
    if projector.store == "elasticsearch":
        es.create_index(projector.name, target, projector.mappings)
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
            _write(projector, projector.documents_for(batch.rows), rebuild.generation)
            rows += len(batch.rows)
        rebuild.caught_up_xid = batch.checkpoint_after.xid
        rebuild.caught_up_position = batch.checkpoint_after.position
        rebuild.save(update_fields=["caught_up_xid", "caught_up_position", "updated_at"])
        if batch.complete:
            return rows


def rebuild(
    name: str,
    *,
    batch_size: int = 1000,
    on_progress: Progress | None = None,
    grace_seconds: float | None = None,
) -> Rebuild:
    """Rebuild (or resume rebuilding) a read model; return the finished Rebuild."""
    projector = projectors.get(name)
    current = Rebuild.objects.filter(
        projector=name,
        status__in=[RebuildStatus.COPYING, RebuildStatus.CATCHING_UP, RebuildStatus.SWITCHED],
    ).first()
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
        if current.status == RebuildStatus.CATCHING_UP:
            _catch_up(projector, current, batch_size)
            if projector.store == "elasticsearch":
                es.swap_alias(name, es.index_name(name, current.generation))
            else:
                redis_store.set_generation(name, current.generation)
            current.status = RebuildStatus.SWITCHED
            current.save(update_fields=["status", "updated_at"])
        if current.status == RebuildStatus.SWITCHED:
            # Rows the live projector wrote into the old generation around the switch.
            _catch_up(projector, current, batch_size)
            current.status = RebuildStatus.DONE
            current.finished_at = timezone.now()
            current.save(update_fields=["status", "finished_at", "updated_at"])
    except Exception as exc:
        current.error = f"{type(exc).__name__}: {exc}"[:4000]
        current.save(update_fields=["error", "updated_at"])
        raise
    if current.previous_generation:
        grace = config.rebuild_grace_seconds() if grace_seconds is None else grace_seconds
        schedule_drop(name, current.previous_generation, grace)
    return current


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
    if _live_generation(projector) == generation:
        logger.warning("not dropping %s generation %s: it is live", name, generation)
        return
    if projector.store == "elasticsearch":
        es.drop_index(es.index_name(name, generation))
    else:
        redis_store.drop_generation(name, generation)
