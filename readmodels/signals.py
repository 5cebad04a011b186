"""Connects the write side's outbox_committed signal to projector wake-ups."""

from django.dispatch import receiver

from orders.signals import outbox_committed
from readmodels import tasks


@receiver(outbox_committed)
def wake_projectors_after_commit(sender, aggregate_types, position=None, **kwargs) -> None:
    tasks.wake_best_effort(aggregate_types, position)
