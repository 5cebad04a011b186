"""Idempotency keys: the first response to a key is stored with the command and replayed.

A key is claimed with INSERT ... ON CONFLICT DO NOTHING inside the command's
transaction. A concurrent request with the same key blocks on the unique index until
the first one commits (then it replays the stored response) or rolls back (then it
runs the command itself). So a key's command runs at most once.

An expired key is renewed in place by the next request that claims it, so the purge
must never delete a row it did not see expired in the same statement: a renewed row
is live again and holds a response that a retry has to get back.
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


# A claim repeats its INSERT when a purge deleted the expired row it collided with;
# each repeat needs a purge to land in its few microseconds, so a handful is plenty.
CLAIM_ATTEMPTS = 5


def claim(*, owner: str, key: str, request_fingerprint: str) -> StoredResponse | None:
    """Claim the key in the current transaction; return the stored response if it has one."""
    now = timezone.now()
    table = IdempotencyKey._meta.db_table
    for _ in range(CLAIM_ATTEMPTS):
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (owner, key, fingerprint, response_headers, created_at, "
                "expires_at) VALUES (%s, %s, %s, '{}'::jsonb, %s, %s) "
                "ON CONFLICT (owner, key) DO NOTHING RETURNING id",
                [owner, key, request_fingerprint, now, now + _ttl()],
            )
            if cursor.fetchone():
                return None
        # The key was committed by an earlier request (ON CONFLICT waited for it). A
        # purge may delete that row, if expired, between the INSERT and this SELECT (or
        # while this SELECT waits for its lock): then the key is free, so claim it again.
        record = IdempotencyKey.objects.select_for_update().filter(owner=owner, key=key).first()
        if record is not None:
            break
    else:
        raise errors.Conflict(
            "This Idempotency-Key is being expired and renewed concurrently; retry.",
            code="idempotency_key_busy",
        )
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
    """Delete expired keys in batches; return how many were deleted.

    The expiry is checked in the DELETE itself, not only when the batch is chosen: a
    request may renew an expired key between the two (claim() updates it in place), and
    PostgreSQL re-checks a DELETE's conditions on the row version it waited for, so a
    renewed key survives. Deleting by id alone would drop the renewed key with its fresh
    response, and the client's retry would run the command a second time.
    """
    table = IdempotencyKey._meta.db_table
    deleted = 0
    while True:
        now = timezone.now()
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "
                "WHERE expires_at <= %s ORDER BY expires_at LIMIT %s) AND expires_at <= %s",
                [now, batch_size, now],
            )
            count = cursor.rowcount
        if count == 0:
            return deleted
        deleted += count
