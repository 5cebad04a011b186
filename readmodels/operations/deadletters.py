"""Retrying and discarding dead letters: outbox rows a projector set aside."""

from __future__ import annotations

from django.utils import timezone

from orders import outbox
from orders.outbox import OutboxRow
from readmodels import config, projectors
from readmodels.models import DeadLetter, DeadLetterStatus
from readmodels.pipeline import locks
from readmodels.pipeline.writing import write_rows


def _as_row(letter: DeadLetter) -> OutboxRow:
    return OutboxRow(
        position=letter.outbox_position,
        xid=letter.outbox_xid,
        aggregate_type=letter.aggregate_type,
        aggregate_id=letter.aggregate_id,
        aggregate_version=0,
        event_type=letter.event_type,
        partition_key=letter.partition_key,
        payload={},
        created_at=letter.first_seen_at,
        request_id="",
    )


def retry(letter: DeadLetter) -> bool:
    """Re-project the letter's aggregate from its current state; True when it worked.

    Runs under the owning segment's lock, so a derived document is still written by
    one writer at a time.
    """
    projector = projectors.get(letter.projector)
    segments = config.segments(projector.name)
    segment = outbox.segment_of(letter.partition_key, segments)
    with locks.try_lock(locks.segment_key(projector.name, segment, segments)) as acquired:
        if not acquired:
            return False
        try:
            write_rows(projector, [_as_row(letter)])
        except Exception as exc:  # noqa: BLE001 - recorded on the letter, shown to the operator
            letter.attempts += 1
            letter.error = f"{type(exc).__name__}: {exc}"[:4000]
            letter.save(update_fields=["attempts", "error", "last_seen_at"])
            return False
    letter.status = DeadLetterStatus.RESOLVED
    letter.last_seen_at = timezone.now()
    letter.save(update_fields=["status", "last_seen_at"])
    return True


def discard(letter: DeadLetter) -> None:
    letter.status = DeadLetterStatus.DISCARDED
    letter.save(update_fields=["status", "last_seen_at"])
