"""The peer's signal processor as many projects configure it: the library's Celery
processor with its index tasks sent once the saving transaction has committed
(`transaction.on_commit`) instead of inside it. Bench-only."""

from functools import partial

from django.db import transaction
from django_elasticsearch_dsl.signals import CelerySignalProcessor


class OnCommitCelerySignalProcessor(CelerySignalProcessor):
    """The library's tasks, sent after the commit: a worker can no longer re-read a row
    before it exists. Nothing records that a task is owed, so a process that dies
    between the commit and the send, or a broker that refuses the send, loses it (the
    plain `on_commit`, as such projects write it: the refusal also escapes the
    committed command)."""

    def handle_save(self, sender, instance, **kwargs):
        send = partial(super().handle_save, sender, instance, **kwargs)
        transaction.on_commit(send, using=kwargs.get("using"))
