"""PostgreSQL advisory locks: one writer per projector segment, one rebuild per read model.

Session-level locks, held across and outside transactions, that live as long as the
session: a worker whose machine dies releases them when the server drops its session
(TCP keepalives, see DATABASES in settings). So a pooler between workers and
PostgreSQL must run in session mode. A dead connection has released its locks with
the session, so unlocking one only closes it.
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager

from django.db import OperationalError, connection

LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout ran out


class LockWaitExpired(Exception):
    """A lock stayed taken for longer than the caller would wait."""


def segment_key(projector: str, segment: int, segments: int) -> tuple[int, int]:
    # Two int4 keys: a stable hash of the projector's name, and the segment.
    return zlib.crc32(projector.encode()) & 0x7FFFFFFF, segments * 1000 + segment


def rebuild_key(name: str) -> tuple[int, int]:
    return zlib.crc32(f"rebuild:{name}".encode()) & 0x7FFFFFFF, 0


def unlock(key: tuple[int, int]) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", list(key))
    except Exception:  # noqa: BLE001 - a dead connection has released it with the session
        connection.close()


@contextmanager
def try_lock(key: tuple[int, int]):
    """Hold the lock if it is free: yield True, or False (at once) if another holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", list(key))
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            unlock(key)


@contextmanager
def lock(key: tuple[int, int], wait_seconds: float):
    """Hold the lock, waiting at most `wait_seconds` for it (else LockWaitExpired).

    A blocking wait, not polling: PostgreSQL queues the request, and a later try_lock
    does not jump the queue, so a busy holder cannot starve it.
    """
    timeout_ms = max(1, int(wait_seconds * 1000))
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, false)", [f"{timeout_ms}ms"])
        try:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", list(key))
        except OperationalError as exc:
            code = getattr(exc.__cause__, "sqlstate", None) or getattr(exc.__cause__, "pgcode", None)
            if code == LOCK_NOT_AVAILABLE:
                raise LockWaitExpired() from exc
            raise
        finally:
            cursor.execute("RESET lock_timeout")
    try:
        yield
    finally:
        unlock(key)
