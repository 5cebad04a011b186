"""Idempotency keys: the first response to a key is stored with the command and replayed.

A key is claimed with INSERT ... ON CONFLICT DO NOTHING inside the command's
transaction. A concurrent request with the same key blocks on the unique index until
the first one commits (then it replays the stored response) or rolls back (then it
runs the command itself). So a key's command runs at most once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from orders import errors
from orders.models import IdempotencyKey

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: object
    headers: dict


def fingerprint(*, method: str, path: str, body: object, if_match: str | None) -> str:
    canonical = json.dumps(
        [method, path, body, if_match], sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _ttl() -> timedelta:
    return timedelta(seconds=settings.SHOP["IDEMPOTENCY_KEY_TTL_SECONDS"])


def claim(*, owner: str, key: str, request_fingerprint: str) -> StoredResponse | None:
    """Claim the key in the current transaction; return the stored response if it has one."""
    now = timezone.now()
    table = IdempotencyKey._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (owner, key, fingerprint, response_headers, created_at, "
            "expires_at) VALUES (%s, %s, %s, '{}'::jsonb, %s, %s) "
            "ON CONFLICT (owner, key) DO NOTHING RETURNING id",
            [owner, key, request_fingerprint, now, now + _ttl()],
        )
        if cursor.fetchone():
            return None
    # The key was committed by an earlier request (ON CONFLICT waited for it).
    record = IdempotencyKey.objects.select_for_update().get(owner=owner, key=key)
    if record.expires_at <= now or record.status_code is None:
        record.fingerprint = request_fingerprint
        record.status_code = None
        record.response_body = None
        record.response_headers = {}
        record.created_at = now
        record.expires_at = now + _ttl()
        record.save()
        return None
    if record.fingerprint != request_fingerprint:
        raise errors.IdempotencyKeyReused()
    return StoredResponse(record.status_code, record.response_body, record.response_headers)


def store(*, owner: str, key: str, response: StoredResponse) -> None:
    IdempotencyKey.objects.filter(owner=owner, key=key).update(
        status_code=response.status_code,
        response_body=response.body,
        response_headers=response.headers,
    )


def purge_expired(*, batch_size: int = 1000) -> int:
    """Delete expired keys in batches; return how many were deleted."""
    deleted = 0
    while True:
        ids = list(
            IdempotencyKey.objects.filter(expires_at__lte=timezone.now()).values_list(
                "pk", flat=True
            )[:batch_size]
        )
        if not ids:
            return deleted
        deleted += IdempotencyKey.objects.filter(pk__in=ids).delete()[0]
