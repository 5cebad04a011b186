"""Who runs which projector segment, and when: wake groups, their flags, the wake loop.

A wake group is segment N of every read model of one store ("redis.0",
"elasticsearch.0", ...). One wake task runs a group's segments in turn, so a commit
costs one Celery hop for all the read models of a store instead of one per read model;
the two stores run in parallel (a slow Elasticsearch never holds the Redis views back),
and so do the segments of a split read model.

A Redis flag per group says a wake task is queued or running: while it is set, commits
queue no other. The flag holds its task's owner token (whoever sets it queues the task
with the token): the running task keeps it alive (a lease) and clears it when it finds
nothing to do, both only while the flag still holds its token. A task whose lease ran
out (its host was cut off, its worker stalled) may come back after the sweep gave the
group to a new task: it must not end or extend that task's flag, and it stops. The beat
sweep queues a task for every group without one, the safety net for lost wake-ups and
dead tasks. Delivery never depends on any of this: the outbox and
the checkpoints do (a lost wake-up costs latency only).

Tasks are queued by name: the Celery tasks (readmodels.tasks) build on this module,
not the other way round.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass

import redis
from celery import current_app
from django.db import DatabaseError, connection

from readmodels import config, projectors
from readmodels.pipeline import checkpoints, progress, runner
from readmodels.pipeline.failures import RetryLater
from readmodels.stores import StoreUnavailable, adapters, redis_store

logger = logging.getLogger(__name__)

WAKE_TASK = "readmodels.tasks.wake"

# A group's read models take turns of about this long (one batch at least), so that a
# read model with a backlog on a slow store does not hold its neighbours back.
TURN_SECONDS = 0.25


def group_of(name: str, segment: int) -> str:
    """The wake group a projector segment runs in: its store, and the segment's index."""
    return f"{projectors.get(name).store.name}.{segment}"


def segments_in(group: str) -> list[tuple[str, int, int]]:
    """The (read model, segment, segments) a group's task runs, in turn."""
    store, segment = group.rsplit(".", 1)
    return [
        (p.name, int(segment), config.segments(p.name))
        for p in projectors.PROJECTORS.values()
        if p.store.name == store and int(segment) < config.segments(p.name)
    ]


def all_groups() -> list[str]:
    return sorted({group_of(name, s) for name in projectors.PROJECTORS
                   for s in range(config.segments(name))})


def wake_flag(group: str) -> str:
    """Set while a group's wake task is queued or running: nobody queues another meanwhile."""
    return f"{config.namespace()}:wake:{group}"


def flag_lease_seconds() -> int:
    """How long a group's flag outlives its task's last sign of life.

    The running task renews it before each of its segments' turns, so it must outlast
    one batch on a slow store (the store timeout): a busy task is never taken for a dead
    one. A task that died (or whose message was lost) holds its group no longer than
    this; then the sweep queues a new one.
    """
    return math.ceil(config.store_timeout()) + 2


def rerun_flag(name: str, segment: int, segments: int) -> str:
    return f"{config.namespace()}:rerun:{name}:{segment}of{segments}"


def ask_holder_to_run_again(name: str, segment: int, segments: int) -> bool:
    """Best effort: without Redis the sweep is the safety net."""
    try:
        redis_store.client().set(rerun_flag(name, segment, segments), 1, ex=60)
        return True
    except redis.RedisError:  # any refusal (MISCONF too): best effort only
        return False


def rerun_asked(name: str, segment: int, segments: int) -> bool:
    try:
        return bool(redis_store.client().getdel(rerun_flag(name, segment, segments)))
    except redis.RedisError:  # any refusal (MISCONF too): best effort only
        return False


def new_owner() -> str:
    return uuid.uuid4().hex


def _queue_wake(group: str, owner: str, **options) -> None:
    current_app.send_task(WAKE_TASK, (group, owner), **options)


def run_once(name: str, segment: int, segments: int,
             time_budget: float | None = None) -> runner.RunResult | None:
    """One run of a segment; None when it failed and will be retried.

    The checkpoint stays where it was; for a store's failure the runner has recorded it
    and set a backoff, and the sweep retries after it. PostgreSQL down or restarting:
    nothing moved, and the next run opens a fresh connection.
    """
    try:
        return runner.run_segment(projectors.get(name), segment, segments,
                                  time_budget=time_budget)
    except (StoreUnavailable, RetryLater) as exc:
        logger.warning("projector %s[%s] will retry: %s", name, segment, exc)
    except DatabaseError as exc:
        logger.warning("projector %s[%s] cannot reach PostgreSQL: %s", name, segment, exc)
        connection.close()
    return None


def queue_groups_without_a_task() -> None:
    """Queue a wake task for every group that has none queued or running (the sweep).

    The safety net for lost wake-ups, for tasks that died, and for rows that waited out a
    store's backoff. A group whose task is running (it renews the flag) gets nothing: a
    second task beside it would only hold a worker process that another group needs, and
    with one process per group, a slow Elasticsearch would then hold the Redis views back.
    """
    groups = all_groups()
    owners = {group: new_owner() for group in groups}
    try:
        pipe = redis_store.client().pipeline(transaction=False)
        for group in groups:
            pipe.set(wake_flag(group), owners[group], nx=True, ex=flag_lease_seconds())
        flagged = pipe.execute()
    except redis_store.CONNECTION_ERRORS:
        flagged = [True] * len(groups)  # no flags without Redis: every group, each time
    for group, newly in zip(groups, flagged, strict=True):
        if newly:
            # Worthless once its flag has lapsed: by then a newer sweep has queued another.
            _queue_wake(group, owners[group], expires=flag_lease_seconds())


def wake_best_effort(aggregate_types, position=None) -> None:
    """Queue a run of the groups whose projectors consume these aggregate types; never raise.

    Called after a command's commit, on the request's time: one Redis round trip, and a
    message only when the group has no wake task queued or running already (under load,
    almost never: the running task keeps going while commits come). Losing a wake-up
    only costs latency: the sweep finds the rows within a second. The commit is also
    noted as the newest one, so that readers can tell a view is behind before its
    projector has even started.
    """
    try:
        consumers = projectors.consuming(aggregate_types)
        woken = sorted({group_of(p.name, s) for p in consumers
                        for s in range(config.segments(p.name))})
        owners = {group: new_owner() for group in woken}
        pipe = redis_store.client().pipeline(transaction=False)
        if position is not None:
            progress.note_commit(pipe, [p.name for p in consumers], position)
        for group in woken:
            pipe.set(wake_flag(group), owners[group], nx=True, ex=flag_lease_seconds())
        flagged = pipe.execute()[-len(woken):] if woken else []
        for group, newly in zip(woken, flagged, strict=True):
            if newly:
                # No expiry: the flag now tells every other commit that this task will
                # come, and a worker with a backlog longer than the flag's lease (a busy
                # queue) must still run it; a late run finds nothing to do and costs
                # little. Only the sweep's messages expire (a newer sweep sends another).
                _queue_wake(group, owners[group], retry=False)
    except Exception as exc:  # noqa: BLE001 - the command has committed; only log
        logger.warning("could not wake projectors (the sweep will catch up): %s", exc)


# The flag's scripts: each acts only while the flag holds the caller's owner token, so a
# task whose lease ran out, and which the sweep replaced, cannot end or extend the flag
# of the task that has the group now. KEYS[1] the flag; ARGV[1] the caller's token.
# ARGV[2] the lease in milliseconds.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# ARGV[3]: the token of the task it is handed to.
_HAND_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
  return 1
end
return 0
"""
# A task queued without a token (by an older release, or run by hand): it is the task
# the flag announces, whatever the flag holds; it takes the flag if it is free.
_ADOPT = """
local owner = redis.call('GET', KEYS[1])
if owner then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return owner
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""


class WakeFlag:
    """A group's flag, as its running task holds it: renewed, cleared, taken again, each
    only while it holds the task's owner token."""

    def __init__(self, client, group: str, owner: str | None):
        self.client, self.group, self.key = client, group, wake_flag(group)
        self.renewed = float("-inf")
        self.owner = owner or self._adopt()

    def _lease_ms(self) -> int:
        return flag_lease_seconds() * 1000

    def _adopt(self) -> str:
        try:
            owner = self.client.eval(_ADOPT, 1, self.key, new_owner(), self._lease_ms())
        except redis_store.CONNECTION_ERRORS:
            return new_owner()  # without Redis there are no flags to honour
        self.renewed = time.monotonic()
        return owner.decode() if isinstance(owner, bytes) else str(owner)

    def renew(self) -> bool:
        """Extend the lease; False once the flag is no longer this task's (it lapsed, and
        the sweep may have given the group to another task)."""
        if time.monotonic() - self.renewed < flag_lease_seconds() / 4:
            return True
        try:
            # Never set again once the task has cleared it (see project_while_commits_come).
            held = self.client.eval(_RENEW, 1, self.key, self.owner, self._lease_ms())
        except redis_store.CONNECTION_ERRORS:
            return True  # without Redis there are no flags to honour
        self.renewed = time.monotonic()
        return bool(held)

    def hand_over_to_the_next_task(self) -> None:
        """Queue the task that carries on, with the flag, if the flag is still this task's."""
        following = new_owner()
        try:
            handed = self.client.eval(_HAND_OVER, 1, self.key, self.owner, self._lease_ms(),
                                      following)
        except redis_store.CONNECTION_ERRORS:
            handed = True
        if handed:
            _queue_wake(self.group, following)

    def clear(self) -> bool:
        """Let the group go; False when Redis did not answer (no flags to honour then)."""
        try:
            self.client.eval(RELEASE, 1, self.key, self.owner)
            return True
        except redis_store.CONNECTION_ERRORS:
            return False

    def take_again(self) -> bool:
        """Take the group back, unless a commit's wake-up took it meanwhile."""
        try:
            return bool(self.client.set(self.key, self.owner, nx=True, ex=flag_lease_seconds()))
        except redis_store.CONNECTION_ERRORS:
            return False


@dataclass
class Turn:
    rows: int  # rows projected
    more_waiting: bool
    # It could not run (backing off after a store's failure, a failed run, or another
    # run holds it); the sweep or the holder takes it from there.
    blocked: bool


def _take_turn(name: str, segment: int, segments: int) -> Turn:
    """A turn of a segment's work: at most about TURN_SECONDS of it."""
    result = run_once(name, segment, segments, time_budget=TURN_SECONDS)
    if result is None or result.backing_off:
        return Turn(0, False, True)  # the sweep retries after the backoff
    if result.locked_out:
        # Another run holds it (a second wake task, a rebuild's last step, a retried
        # dead letter): it runs again for us (the rerun flag).
        ask_holder_to_run_again(name, segment, segments)
        return Turn(0, False, True)
    more = not result.complete or rerun_asked(name, segment, segments)
    return Turn(result.rows, more, False)


def _one_pass(group: str, flag: WakeFlag) -> tuple[int, bool, set] | None:
    """A turn of every segment of the group: rows projected, whether more wait, and the
    segments that were blocked; None when the group is no longer this task's."""
    rows, more, blocked = 0, False, set()
    for name, segment, segments in segments_in(group):
        if not flag.renew():
            logger.warning("wake group %s was given to another task; this one stops", group)
            return None
        turn = _take_turn(name, segment, segments)
        rows, more = rows + turn.rows, more or turn.more_waiting
        if turn.blocked:
            blocked.add((name, segment, segments))
    return rows, more, blocked


def _rows_waiting(group: str, blocked: set) -> bool:
    """Whether rows wait for one of the group's segments that were not blocked just now.

    Without PostgreSQL, none: a task that went on would only fail again (as run_once
    does, it lets the connection go); the sweep takes the group up once it is back.
    """
    try:
        return any(
            checkpoints.rows_waiting(projectors.get(name), segment, segments)
            for name, segment, segments in segments_in(group)
            if (name, segment, segments) not in blocked
        )
    except DatabaseError as exc:
        logger.warning("wake group %s cannot reach PostgreSQL: %s", group, exc)
        connection.close()
        return False


def project_while_commits_come(group: str, owner: str | None = None) -> None:
    """Project a group's segments while commits keep coming, in batches that grow with load.

    The group's flag stays set while this runs, so commits meanwhile send no message and
    the sweep sends no second task: this one finds their rows on its next pass. Between
    passes that caught up it waits a few milliseconds (MICRO_BATCH_LINGER_MS, well inside
    the lag SLO; on a store whose refresh costs grow, as long as the pass took, if
    longer, up to a second), so that the next pass carries the commits of that time in
    one batch, instead of paying a run's fixed cost for each tiny batch; a pass that
    left rows waiting goes on at once. When a pass finds nothing it clears the flag and
    looks once more (a look, no projecting): rows of a commit before the clear are found
    by that look, and the task goes on if it can set the flag again; a commit after the
    clear sets the flag and queues a new task, which takes them. None is left behind,
    and the group never has two tasks projecting.
    """
    flag = WakeFlag(redis_store.client(), group, owner)
    linger = config.micro_batch_linger()
    like_a_pass = adapters.BY_NAME[group.rsplit(".", 1)[0]].linger_like_a_pass
    deadline = time.monotonic() + config.run_time_budget()
    while True:
        started = time.monotonic()
        outcome = _one_pass(group, flag)
        if outcome is None:
            return
        rows, more, blocked = outcome
        spent = time.monotonic() - started
        if rows or more:
            if time.monotonic() > deadline:
                # Leave the worker process to other tasks; carry on in a new task (the
                # flag stays set, so commits meanwhile send none).
                flag.hand_over_to_the_next_task()
                return
            if not more:
                # Micro-batching: let the next pass's batch fill up. Where a refresh
                # costs more as the view grows, for at least as long as this pass took:
                # the group spends at most half its time refreshing, in batches that grow
                # with the cost, instead of refreshing back to back until the lag grows
                # without bound. Elsewhere a longer pass means a busy CPU, and waiting
                # longer would only add lag. At most a second: Elasticsearch's own
                # default refresh interval.
                time.sleep(min(max(linger, spent), 1.0) if like_a_pass else linger)
            continue
        if not flag.clear():
            return  # without Redis there are no flags to honour; the sweep carries on
        # Only a look: rows it finds came from a commit that saw the flag still set. If
        # a commit has set it again meanwhile, that commit's task takes them; projecting
        # them here too would run two tasks of the group at once, and hold a worker
        # process that the other group's next wake-up needs.
        if not _rows_waiting(group, blocked):
            return
        if not flag.take_again():
            return  # a newer wake-up has queued a task of its own
