"""Connects the write side's signals: projector wake-ups, remembered session tokens."""

from django.dispatch import receiver

from orders.signals import command_answered, outbox_committed
from readmodels import sessions
from readmodels.pipeline import wake_groups


@receiver(outbox_committed)
def wake_projectors_after_commit(sender, aggregate_types, position=None, **kwargs) -> None:
    wake_groups.wake_best_effort(aggregate_types, position)


@receiver(command_answered)
def remember_session_token(sender, user_id, token, **kwargs) -> None:
    sessions.remember_best_effort(user_id=user_id, token=token)
