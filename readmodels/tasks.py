"""Celery tasks of the read side. Thin: they pick a segment and call the runner.

Delivery does not depend on these tasks arriving: a wake-up after each commit makes
projection fast, the beat sweep every second makes it certain, and the checkpoint in
PostgreSQL makes every run safe to repeat (or to run twice at once: the advisory lock
lets only one through).
"""

from __future__ import annotations

import logging
import time

import redis
from celery import shared_task
from django.db import DatabaseError, connection

from readmodels import config, projectors
from readmodels.pipeline import progress, runner
from readmodels.stores import StoreUnavailable, redis_store

logger = logging.getLogger(__name__)

# Wake-ups and sweeps are worthless once old: a newer one will come.
TASK_EXPIRES_SECONDS = 5


def wake_flag(name: str, segment: int, segments: int) -> str:
    return f"{config.namespace()}:wake:{name}:{segment}of{segments}"


def rerun_flag(name: str, segment: int, segments: int) -> str:
    return f"{config.namespace()}:rerun:{name}:{segment}of{segments}"


def _ask_holder_to_run_again(name: str, segment: int, segments: int) -> bool:
    """Best effort: without Redis the sweep is the safety net."""
    try:
        redis_store.client().set(rerun_flag(name, segment, segments), 1, ex=60)
        return True
    except redis.RedisError:  # any refusal (MISCONF too): best effort only
        return False


def _rerun_asked(name: str, segment: int, segments: int) -> bool:
    try:
        return bool(redis_store.client().getdel(rerun_flag(name, segment, segments)))
    except redis.RedisError:  # any refusal (MISCONF too): best effort only
        return False


@shared_task(acks_late=True, ignore_result=True)
def project(name: str, segment: int = 0, segments: int | None = None) -> dict:
    """Project one segment until caught up, and again while others asked for it meanwhile.

    A wake-up that finds the segment locked does not queue retries: it asks the holder to
    run again (a Redis flag) and tries the lock once more. The holder looks for the flag
    after it has released the lock, so either it sees the request or the lock was free
    for the second try: a row committed while a run was in progress is never left for
    the sweep, and under load one task keeps projecting instead of many tasks colliding.
    """
    projector = projectors.get(name)
    segments = segments or config.segments(name)
    deadline = time.monotonic() + config.run_time_budget()
    rows, asked = 0, False
    try:
        redis_store.client().delete(wake_flag(name, segment, segments))
    except redis.RedisError:  # any refusal (MISCONF too): best effort only
        pass
    try:
        while True:
            result = runner.run_segment(projector, segment, segments)
            rows += result.rows
            if result.locked_out:
                if asked or not _ask_holder_to_run_again(name, segment, segments):
                    break  # the holder will see the request after releasing the lock
                asked = True
                continue
            if result.backing_off:
                break  # the sweep retries after the backoff
            more = not result.complete or _rerun_asked(name, segment, segments)
            if not more:
                break
            if time.monotonic() > deadline:
                # Leave the worker thread to other tasks; carry on in a new task.
                project.apply_async((name, segment, segments), expires=TASK_EXPIRES_SECONDS)
                break
    except (StoreUnavailable, runner.RetryLater) as exc:
        # The checkpoint stays; the runner has set a backoff, and the sweep retries.
        logger.warning("projector %s[%s] will retry: %s", name, segment, exc)
        return {"retry": True}
    except DatabaseError as exc:
        # PostgreSQL is down or restarting: nothing moved; the sweep tries again, on a
        # fresh connection.
        logger.warning("projector %s[%s] cannot reach PostgreSQL: %s", name, segment, exc)
        connection.close()
        return {"retry": True}
    return {"rows": rows, "complete": result.complete}


@shared_task(ignore_result=True)
def sweep() -> None:
    """Queue a run of every segment of every projector (the safety net for lost wake-ups)."""
    for name in projectors.PROJECTORS:
        segments = config.segments(name)
        for segment in range(segments):
            project.apply_async((name, segment, segments), expires=TASK_EXPIRES_SECONDS)


def wake_best_effort(aggregate_types, position=None) -> None:
    """Queue runs of the projectors that consume these aggregate types; never raise.

    Called after a command's commit, on the request's time: one Redis round trip and
    at most one message. Losing a wake-up only costs latency: the sweep finds the rows
    within a second. The commit is also noted as the newest one, so that readers can
    tell a view is behind before its projector has even started.
    """
    try:
        consumers = projectors.consuming(aggregate_types)
        segments_of = [(p.name, s, config.segments(p.name)) for p in consumers
                       for s in range(config.segments(p.name))]
        pipe = redis_store.client().pipeline(transaction=False)
        if position is not None:
            progress.note_commit(pipe, [p.name for p in consumers], position)
        for name, segment, segments in segments_of:
            # One queued wake-up per segment is enough; the flag clears when it runs.
            pipe.set(wake_flag(name, segment, segments), 1, nx=True, ex=2)
        flagged = pipe.execute()[-len(segments_of):] if segments_of else []
        due = [list(seg) for seg, newly in zip(segments_of, flagged, strict=True) if newly]
        if due:
            wake.apply_async((due,), expires=TASK_EXPIRES_SECONDS, retry=False)
    except Exception as exc:  # noqa: BLE001 - the command has committed; only log
        logger.warning("could not wake projectors (the sweep will catch up): %s", exc)


@shared_task(ignore_result=True)
def wake(due: list) -> None:
    """Run the woken projector segments: the first here (no second hop), the rest fanned
    out so that other worker threads take them in parallel."""
    first, *rest = due
    for name, segment, segments in rest:
        project.apply_async((name, segment, segments), expires=TASK_EXPIRES_SECONDS)
    project(*first)


@shared_task(ignore_result=True)
def drop_generation(name: str, generation: int) -> None:
    """Drop an old index or key generation after a rebuild's grace period."""
    from readmodels.operations import rebuild

    rebuild.drop_generation(name, generation)


@shared_task(acks_late=True, ignore_result=True)
def rebuild_read_model(name: str) -> None:
    """Rebuild a read model (started from admin); resumes if a worker died mid-way."""
    from readmodels.operations import rebuild

    rebuild.rebuild(name)


@shared_task(ignore_result=True)
def reconcile_all(repair: bool = False) -> None:
    """Compare every read model with the write model (beat runs it daily)."""
    from readmodels.operations import reconcile

    for name in projectors.PROJECTORS:
        try:
            reconcile.reconcile(name, repair=repair)
        except StoreUnavailable as exc:
            logger.warning("reconcile of %s skipped: %s", name, exc)


@shared_task(ignore_result=True)
def purge_outbox() -> int:
    """Delete outbox rows every projector has passed and that are past retention."""
    from readmodels.operations import retention

    return retention.purge()


@shared_task(ignore_result=True)
def record_lag() -> None:
    """Sample each segment's lag for the admin chart, and warn on an SLO breach."""
    from datetime import timedelta

    from django.utils import timezone

    from readmodels.models import LagSample
    from readmodels.operations import status

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
    LagSample.objects.filter(at__lt=now - timedelta(days=1)).delete()
