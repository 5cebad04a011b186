"""Celery entry points of the read side. Thin: each calls the pipeline or an operation.

Delivery does not depend on these tasks arriving: a wake-up after each commit makes
projection fast, the beat sweep every second makes it certain, and the checkpoint in
PostgreSQL makes every run safe to repeat (or to run twice at once: the advisory lock
lets only one through). Who runs which segment is readmodels.pipeline.wake_groups.
"""

from __future__ import annotations

import logging
import time

from celery import shared_task

from readmodels import config, projectors
from readmodels.operations import lag_samples, rebuild, reconcile, retention
from readmodels.pipeline import wake_groups
from readmodels.stores import StoreUnavailable

logger = logging.getLogger(__name__)

# The pipeline's own tasks (wake, sweep) are acknowledged on receipt, not after they
# run: the outbox and the sweep every second are the delivery guarantee, so a lost
# message costs latency only, and a late acknowledgement after the broker went away
# (Redis restarted mid-run) crashes the worker in kombu's Redis transport ("Unrecoverable
# error: 'NoneType' object has no attribute 'hostname'"): the fault suite shows it.
PIPELINE_TASK = {"acks_late": False, "ignore_result": True}


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
        result = wake_groups.run_once(name, segment, segments)
        if result is None:
            return {"retry": True}
        rows += result.rows
        if result.locked_out:
            if asked or not wake_groups.ask_holder_to_run_again(name, segment, segments):
                break  # the holder will see the request after releasing the lock
            asked = True
            continue
        if result.backing_off:
            break  # the sweep retries after the backoff
        if result.complete and not wake_groups.rerun_asked(name, segment, segments):
            break
        if time.monotonic() > deadline:
            # Leave the worker process to other tasks; carry on in a new task.
            project.apply_async((name, segment, segments), expires=5)
            break
    return {"rows": rows, "complete": result.complete}


@shared_task(**PIPELINE_TASK)
def sweep() -> None:
    """Queue a wake task for every wake group that has none queued or running (beat, every second)."""
    wake_groups.queue_groups_without_a_task()


@shared_task(**PIPELINE_TASK)
def wake(group: str) -> None:
    """Project a wake group's segments while commits keep coming."""
    wake_groups.project_while_commits_come(group)


@shared_task(ignore_result=True)
def drop_generation(name: str, generation: int) -> None:
    """Drop an old index or key generation after a rebuild's grace period."""
    rebuild.drop_generation(name, generation)


@shared_task(acks_late=True, ignore_result=True)
def rebuild_read_model(name: str) -> None:
    """Rebuild a read model (started from admin); resumes if a worker died mid-way."""
    rebuild.rebuild(name)


@shared_task(acks_late=True, ignore_result=True)
def resume_rebuild(rebuild_id: int) -> None:
    """Finish a rebuild whose last step failed (the rebuild schedules this itself)."""
    rebuild.resume(rebuild_id)


@shared_task(acks_late=True, ignore_result=True)
def reconcile_read_model(name: str, repair: bool = False) -> None:
    """Reconcile one read model (started from admin); the run is recorded for the page."""
    reconcile.reconcile(name, repair=repair)


@shared_task(ignore_result=True)
def reconcile_all(repair: bool = False) -> None:
    """Compare every read model with the write model (beat runs it daily)."""
    for name in projectors.PROJECTORS:
        try:
            reconcile.reconcile(name, repair=repair)
        except StoreUnavailable as exc:
            logger.warning("reconcile of %s skipped: %s", name, exc)


@shared_task(ignore_result=True)
def purge_outbox() -> int:
    """Delete outbox rows every projector has passed and that are past retention."""
    return retention.purge()


@shared_task(ignore_result=True)
def record_lag() -> None:
    """Sample each segment's lag for the admin chart, and warn on an SLO breach."""
    lag_samples.record()
