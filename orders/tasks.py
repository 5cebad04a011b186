"""Periodic upkeep of the write side."""

from celery import shared_task

from orders import idempotency


@shared_task
def purge_idempotency_keys() -> int:
    return idempotency.purge_expired()


@shared_task
def purge_expired_api_tokens() -> int:
    """Expired API tokens (requests refuse them already; see shop.web.api_tokens)."""
    from shop.web.api_tokens import purge_expired_tokens

    return purge_expired_tokens()
