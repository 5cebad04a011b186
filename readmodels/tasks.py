"""Celery entry points of the read side. Thin: each calls the pipeline or an operation.

Delivery does not depend on these tasks arriving: a wake-up after each commit makes
projection fast, the beat sweep every second makes it certain, and the checkpoint in
PostgreSQL makes every run safe to repeat (or to run twice at once: the advisory lock
lets only one through). Who runs which segment is readmodels.pipeline.wake_groups.
"""

from __future__ import annotations

import logging

from celery import shared_task

from readmodels import projectors
from readmodels.operations import rebuild, reconcile, retention
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
def sweep() -> None:
    """Queue a wake task for every wake group that has none queued or running (beat, every second)."""
    wake_groups.queue_groups_without_a_task()


@shared_task(**PIPELINE_TASK)
def wake(group: str, owner: str | None = None) -> None:
    """Project a wake group's segments while commits keep coming; `owner`: the token the
    group's wake flag was set to for this task."""
    wake_groups.project_while_commits_come(group, owner)


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
