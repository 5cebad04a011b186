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


def lane_of(name: str, segment: int) -> str:
    """The lane a projector segment runs in: its store, and the segment's index.

    One task runs a lane's segments one after the other, so a wake-up costs one Celery
    hop for all the read models of a store instead of one per read model; the two
    stores run in parallel (a slow Elasticsearch never holds the Redis views back), and
    so do the segments of a split read model.
    """
    return f"{projectors.get(name).store}.{segment}"


def lane_segments(lane: str) -> list[tuple[str, int, int]]:
    store, segment = lane.rsplit(".", 1)
    return [
        (p.name, int(segment), config.segments(p.name))
        for p in projectors.PROJECTORS.values()
        if p.store == store and int(segment) < config.segments(p.name)
    ]


def wake_flag(lane: str) -> str:
    """Set while a lane's wake task is queued or running: commits meanwhile send none."""
    return f"{config.namespace()}:wake:{lane}"


# A wake task holds its lane's flag for this long, and renews it while it runs: a task
# that died (or whose message was lost) silences its lane's wake-ups no longer than
# this; the sweep covers the gap.
WAKE_LEASE_SECONDS = 5


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


# The pipeline's own tasks (project, wake, sweep) are acknowledged on receipt, not after
# they run: the outbox and the sweep every second are the delivery guarantee, so a lost
# message costs latency only, and a late acknowledgement after the broker went away
# (Redis restarted mid-run) crashes the worker in kombu's Redis transport ("Unrecoverable
# error: 'NoneType' object has no attribute 'hostname'"): the fault suite shows it.
PIPELINE_TASK = {"acks_late": False, "ignore_result": True}


@shared_task(**PIPELINE_TASK)
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


@shared_task(**PIPELINE_TASK)
def sweep() -> None:
    """Queue a run of every segment of every projector (the safety net for lost wake-ups).

    Except the lanes a wake task is projecting right now (it renewed its flag within
    the last two sweep intervals): that task finds their rows on its next pass, and a
    sweep's run of a slow store beside it would only hold a worker process that another
    lane's wake-up is waiting for.
    """
    busy = _lanes_running()
    for name in projectors.PROJECTORS:
        segments = config.segments(name)
        for segment in range(segments):
            if lane_of(name, segment) not in busy:
                project.apply_async((name, segment, segments), expires=TASK_EXPIRES_SECONDS)


_RUNNING = "running:"


def _lanes_running() -> set[str]:
    lanes = sorted({lane_of(name, s) for name in projectors.PROJECTORS
                    for s in range(config.segments(name))})
    try:
        values = redis_store.client().mget([wake_flag(lane) for lane in lanes])
    except redis_store.CONNECTION_ERRORS:
        return set()
    fresh_after = time.time() - 2 * config.sweep_interval()
    running = set()
    for lane, value in zip(lanes, values, strict=True):
        text = value.decode() if value else ""
        if text.startswith(_RUNNING) and float(text[len(_RUNNING):]) > fresh_after:
            running.add(lane)
    return running


def wake_best_effort(aggregate_types, position=None) -> None:
    """Queue a run of the lanes whose projectors consume these aggregate types; never raise.

    Called after a command's commit, on the request's time: one Redis round trip, and a
    message only when the lane has no wake task queued or running already (under load,
    almost never: the running task keeps going while commits come). Losing a wake-up
    only costs latency: the sweep finds the rows within a second. The commit is also
    noted as the newest one, so that readers can tell a view is behind before its
    projector has even started.
    """
    try:
        consumers = projectors.consuming(aggregate_types)
        lanes = sorted({lane_of(p.name, s) for p in consumers
                        for s in range(config.segments(p.name))})
        pipe = redis_store.client().pipeline(transaction=False)
        if position is not None:
            progress.note_commit(pipe, [p.name for p in consumers], position)
        for lane in lanes:
            pipe.set(wake_flag(lane), 1, nx=True, ex=WAKE_LEASE_SECONDS)
        flagged = pipe.execute()[-len(lanes):] if lanes else []
        for lane, newly in zip(lanes, flagged, strict=True):
            if newly:
                # No expiry: the flag now tells every other commit that this task will
                # come; a late run finds nothing to do and costs little.
                wake.apply_async((lane,), retry=False)
    except Exception as exc:  # noqa: BLE001 - the command has committed; only log
        logger.warning("could not wake projectors (the sweep will catch up): %s", exc)


def _run_lane(lane: str) -> int:
    """Bring every segment of the lane up to date once; return the rows projected."""
    rows = 0
    for name, segment, segments in lane_segments(lane):
        rows += project(name, segment, segments).get("rows", 0)
    return rows


@shared_task(**PIPELINE_TASK)
def wake(lane: str) -> None:
    """Project a lane's segments while commits keep coming, in batches that grow with load.

    The lane's wake flag stays set while this runs, so commits meanwhile send no
    message: this task finds their rows on its next pass. Between passes that found
    rows it waits a few milliseconds (MICRO_BATCH_LINGER_MS, well inside the lag SLO)
    so that the next pass carries the commits of that time in one batch, instead of
    paying a run's fixed cost for each tiny batch. When a pass finds nothing it clears
    the flag and looks once more: a commit before the clear is found by that look, a
    commit after it sets the flag again and queues a new task; none is left behind.
    """
    client = redis_store.client()
    flag = wake_flag(lane)
    linger = config.micro_batch_linger()
    deadline = time.monotonic() + config.run_time_budget()
    renew_every = config.sweep_interval() / 2
    _renew(client, flag)
    renewed = time.monotonic()
    while True:
        if _run_lane(lane):
            if time.monotonic() > deadline:
                # Leave the worker process to other tasks; carry on in a new task (the
                # flag stays set, so commits meanwhile send none).
                _renew(client, flag)
                wake.apply_async((lane,))
                return
            if time.monotonic() - renewed > renew_every:
                _renew(client, flag)
                renewed = time.monotonic()
            time.sleep(linger)  # micro-batching: let the next pass's batch fill up
            continue
        try:
            client.delete(flag)
        except redis_store.CONNECTION_ERRORS:
            return  # without Redis there are no flags to honour; the sweep carries on
        if not _run_lane(lane):
            return
        try:
            if not client.set(flag, f"{_RUNNING}{time.time()}", nx=True,
                              ex=WAKE_LEASE_SECONDS):
                return  # a newer wake-up has queued a task of its own
        except redis_store.CONNECTION_ERRORS:
            return


def _renew(client, flag: str) -> None:
    """Hold the lane's flag, marked as projected right now (see sweep)."""
    try:
        client.set(flag, f"{_RUNNING}{time.time()}", ex=WAKE_LEASE_SECONDS)
    except redis_store.CONNECTION_ERRORS:
        pass


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


@shared_task(acks_late=True, ignore_result=True)
def resume_rebuild(rebuild_id: int) -> None:
    """Finish a rebuild whose last step failed (the rebuild schedules this itself)."""
    from readmodels.operations import rebuild

    rebuild.resume(rebuild_id)


@shared_task(acks_late=True, ignore_result=True)
def reconcile_read_model(name: str, repair: bool = False) -> None:
    """Reconcile one read model (started from admin); the run is recorded for the page."""
    from readmodels.operations import reconcile

    reconcile.reconcile(name, repair=repair)


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
