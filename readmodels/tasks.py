"""Celery tasks of the read side. Thin: they pick a segment and call the runner.

Delivery does not depend on these tasks arriving: a wake-up after each commit makes
projection fast, the beat sweep every second makes it certain, and the checkpoint in
PostgreSQL makes every run safe to repeat (or to run twice at once: the advisory lock
lets only one through).
"""

from __future__ import annotations

import logging
import math
import time

import redis
from celery import shared_task
from django.db import DatabaseError, connection

from readmodels import config, projectors
from readmodels.pipeline import progress, runner
from readmodels.stores import StoreUnavailable, adapters, redis_store

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
    return f"{projectors.get(name).store.name}.{segment}"


def lane_segments(lane: str) -> list[tuple[str, int, int]]:
    store, segment = lane.rsplit(".", 1)
    return [
        (p.name, int(segment), config.segments(p.name))
        for p in projectors.PROJECTORS.values()
        if p.store.name == store and int(segment) < config.segments(p.name)
    ]


def lanes() -> list[str]:
    return sorted({lane_of(name, s) for name in projectors.PROJECTORS
                   for s in range(config.segments(name))})


def wake_flag(lane: str) -> str:
    """Set while a lane's wake task is queued or running: nobody queues another meanwhile."""
    return f"{config.namespace()}:wake:{lane}"


def wake_lease() -> int:
    """How long a lane's flag outlives its task's last sign of life.

    The running task renews it before each of its read models' slices, so it must
    outlast one batch on a slow store (the store timeout): a busy task is never taken for
    a dead one. A task that died (or whose message was lost) holds its lane no longer
    than this; then the sweep queues a new one.
    """
    return math.ceil(config.store_timeout()) + 2


# A lane's read models take turns in slices of about this long (one batch at least), so
# that a read model with a backlog on a slow store does not hold its neighbours back.
LANE_SLICE_SECONDS = 0.25


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


def _run(name: str, segment: int, segments: int,
         time_budget: float | None = None) -> runner.RunResult | None:
    """One run of a segment; None when it failed and will be retried.

    The checkpoint stays where it was; for a store's failure the runner has recorded it
    and set a backoff, and the sweep retries after it. PostgreSQL down or restarting:
    nothing moved, and the next run opens a fresh connection.
    """
    try:
        return runner.run_segment(projectors.get(name), segment, segments,
                                  time_budget=time_budget)
    except (StoreUnavailable, runner.RetryLater) as exc:
        logger.warning("projector %s[%s] will retry: %s", name, segment, exc)
    except DatabaseError as exc:
        logger.warning("projector %s[%s] cannot reach PostgreSQL: %s", name, segment, exc)
        connection.close()
    return None


@shared_task(**PIPELINE_TASK)
def project(name: str, segment: int = 0, segments: int | None = None) -> dict:
    """Project one segment until caught up, and again while others asked for it meanwhile.

    A run that finds the segment locked does not queue retries: it asks the holder to
    run again (a Redis flag) and tries the lock once more. The holder looks for the flag
    after it has released the lock, so either it sees the request or the lock was free
    for the second try: a row committed while a run was in progress is never left for
    the sweep, and under load one task keeps projecting instead of many tasks colliding.
    """
    segments = segments or config.segments(name)
    deadline = time.monotonic() + config.run_time_budget()
    rows, asked = 0, False
    while True:
        result = _run(name, segment, segments)
        if result is None:
            return {"retry": True}
        rows += result.rows
        if result.locked_out:
            if asked or not _ask_holder_to_run_again(name, segment, segments):
                break  # the holder will see the request after releasing the lock
            asked = True
            continue
        if result.backing_off:
            break  # the sweep retries after the backoff
        if result.complete and not _rerun_asked(name, segment, segments):
            break
        if time.monotonic() > deadline:
            # Leave the worker process to other tasks; carry on in a new task.
            project.apply_async((name, segment, segments), expires=TASK_EXPIRES_SECONDS)
            break
    return {"rows": rows, "complete": result.complete}


@shared_task(**PIPELINE_TASK)
def sweep() -> None:
    """Queue a wake task for every lane that has none queued or running.

    The safety net for lost wake-ups, for tasks that died, and for rows that waited out a
    store's backoff. A lane whose task is running (it renews the flag) gets nothing: a
    second task beside it would only hold a worker process that another lane needs, and
    with one process per lane, a slow Elasticsearch would then hold the Redis views back.
    """
    all_lanes = lanes()
    try:
        pipe = redis_store.client().pipeline(transaction=False)
        for lane in all_lanes:
            pipe.set(wake_flag(lane), 1, nx=True, ex=wake_lease())
        flagged = pipe.execute()
    except redis_store.CONNECTION_ERRORS:
        flagged = [True] * len(all_lanes)  # no flags without Redis: every lane, each time
    for lane, newly in zip(all_lanes, flagged, strict=True):
        if newly:
            # Worthless once its flag has lapsed: by then a newer sweep has queued another.
            wake.apply_async((lane,), expires=wake_lease())


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
        woken = sorted({lane_of(p.name, s) for p in consumers
                        for s in range(config.segments(p.name))})
        pipe = redis_store.client().pipeline(transaction=False)
        if position is not None:
            progress.note_commit(pipe, [p.name for p in consumers], position)
        for lane in woken:
            pipe.set(wake_flag(lane), 1, nx=True, ex=wake_lease())
        flagged = pipe.execute()[-len(woken):] if woken else []
        for lane, newly in zip(woken, flagged, strict=True):
            if newly:
                # No expiry: the flag now tells every other commit that this task will
                # come, and a worker with a backlog longer than the flag's lease (a busy
                # queue) must still run it; a late run finds nothing to do and costs
                # little. Only the sweep's messages expire (a newer sweep sends another).
                wake.apply_async((lane,), retry=False)
    except Exception as exc:  # noqa: BLE001 - the command has committed; only log
        logger.warning("could not wake projectors (the sweep will catch up): %s", exc)


class _Lease:
    """A lane's flag, kept alive while its task works (see wake_lease)."""

    def __init__(self, client, flag: str):
        self.client, self.flag, self.renewed = client, flag, float("-inf")

    def renew(self) -> None:
        if time.monotonic() - self.renewed < wake_lease() / 4:
            return
        try:
            # xx: never set it again once the task has cleared it (see wake).
            self.client.set(self.flag, 1, ex=wake_lease(), xx=True)
        except redis_store.CONNECTION_ERRORS:
            pass  # without Redis there are no flags to honour
        self.renewed = time.monotonic()


def _slice(name: str, segment: int, segments: int) -> tuple[int, bool, bool]:
    """A slice of a segment's work: rows projected, whether more wait, whether it is blocked.

    Blocked: it could not run (backing off after a store's failure, a failed run, or
    another run holds it); the sweep or the holder takes it from there.
    """
    result = _run(name, segment, segments, time_budget=LANE_SLICE_SECONDS)
    if result is None or result.backing_off:
        return 0, False, True  # the sweep retries after the backoff
    if result.locked_out:
        # Another run holds it (a direct run, a rebuild's catch-up): it runs again for
        # us (the rerun flag).
        _ask_holder_to_run_again(name, segment, segments)
        return 0, False, True
    return result.rows, not result.complete or _rerun_asked(name, segment, segments), False


def _run_lane(lane: str, lease: _Lease) -> tuple[int, bool, set]:
    """A slice of every segment of the lane, in turn: rows projected, whether more wait,
    and the segments that were blocked."""
    rows, more, blocked = 0, False, set()
    for name, segment, segments in lane_segments(lane):
        lease.renew()
        projected, waiting, stuck = _slice(name, segment, segments)
        rows, more = rows + projected, more or waiting
        if stuck:
            blocked.add((name, segment, segments))
    return rows, more, blocked


def _rows_waiting(lane: str, blocked: set) -> bool:
    """Whether rows wait for one of the lane's segments that were not blocked just now.

    Without PostgreSQL, none: a task that went on would only fail again (as _run does,
    it lets the connection go); the sweep takes the lane up once it is back.
    """
    try:
        return any(
            runner.rows_waiting(projectors.get(name), segment, segments)
            for name, segment, segments in lane_segments(lane)
            if (name, segment, segments) not in blocked
        )
    except DatabaseError as exc:
        logger.warning("lane %s cannot reach PostgreSQL: %s", lane, exc)
        connection.close()
        return False


@shared_task(**PIPELINE_TASK)
def wake(lane: str) -> None:
    """Project a lane's segments while commits keep coming, in batches that grow with load.

    The lane's flag stays set while this runs, so commits meanwhile send no message and
    the sweep sends no second task: this one finds their rows on its next pass. Between
    passes that caught up it waits a few milliseconds (MICRO_BATCH_LINGER_MS, well inside
    the lag SLO; on Elasticsearch as long as the pass took, if longer, up to a second),
    so that the next pass carries the commits of that time in one batch, instead of
    paying a run's fixed cost for each tiny batch; a pass that left rows waiting goes on
    at once. When a pass finds nothing it clears the flag and looks once more (a look,
    no projecting): rows of a commit before the clear are found by that look, and the
    task goes on if it can set the flag again; a commit after the clear sets the flag
    and queues a new task, which takes them. None is left behind, and the lane never
    has two tasks projecting.
    """
    client = redis_store.client()
    flag = wake_flag(lane)
    lease = _Lease(client, flag)
    linger = config.micro_batch_linger()
    proportional = adapters.BY_NAME[lane.rsplit(".", 1)[0]].linger_like_a_pass
    deadline = time.monotonic() + config.run_time_budget()
    while True:
        started = time.monotonic()
        rows, more, blocked = _run_lane(lane, lease)
        spent = time.monotonic() - started
        if rows or more:
            if time.monotonic() > deadline:
                # Leave the worker process to other tasks; carry on in a new task (the
                # flag stays set, so commits meanwhile send none).
                try:
                    client.set(flag, 1, ex=wake_lease())
                except redis_store.CONNECTION_ERRORS:
                    pass
                wake.apply_async((lane,))
                return
            if not more:
                # Micro-batching: let the next pass's batch fill up. On Elasticsearch for
                # at least as long as this pass took: a refresh's cost grows with the
                # index on the dev server (and every refresh is a new segment on a real
                # one), so the lane spends at most half its time refreshing, in batches
                # that grow with the cost, instead of refreshing back to back until the
                # lag grows without bound. Redis writes cost the same at any size: there
                # a longer pass means a busy CPU, and waiting longer would only add lag.
                # At most a second: Elasticsearch's own default refresh interval.
                time.sleep(min(max(linger, spent), 1.0) if proportional else linger)
            continue
        try:
            client.delete(flag)
        except redis_store.CONNECTION_ERRORS:
            return  # without Redis there are no flags to honour; the sweep carries on
        # Only a look: rows it finds came from a commit that saw the flag still set. If
        # a commit has set it again meanwhile, that commit's task takes them; projecting
        # them here too would run two tasks of the lane at once, and hold a worker
        # process that the other lane's next wake-up needs.
        if not _rows_waiting(lane, blocked):
            return
        try:
            if not client.set(flag, 1, nx=True, ex=wake_lease()):
                return  # a newer wake-up has queued a task of its own
        except redis_store.CONNECTION_ERRORS:
            return


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
