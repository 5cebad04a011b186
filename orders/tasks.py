"""Periodic upkeep of the write side."""

from celery import shared_task

from orders import idempotency


@shared_task
def purge_idempotency_keys() -> int:
    return idempotency.purge_expired()
