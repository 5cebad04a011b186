"""Finding the rows to blame when a batch fails: one by one, with proof that the store works.

Any error of a batch that is not an outage is blamed on rows by trying them one by one.
A row is only blamed when the store accepts other rows of the batch: if every row the
store was asked to take was refused, the store is refusing, whatever the exception
says, and the segment backs off as for an outage. A row whose own load fails (bad
data, or a statement timeout on its load: SQLSTATE 57014) is blamed without that
proof, since the store never saw it. A blamed row is retried a bounded number of times
with a growing backoff, then set aside as a dead letter and the segment moves on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from orders.outbox import OutboxRow, Position
from readmodels import config, metrics
from readmodels.models import DeadLetter, DeadLetterStatus
from readmodels.pipeline.failures import RetryLater, RowsRefused, StoreRefused, is_outage
from readmodels.pipeline.writing import write_rows
from readmodels.projectors import Projector
from readmodels.stores import StoreUnavailable

logger = logging.getLogger(__name__)

# Rows tried one by one, all refused by the store, before the store is taken to be
# refusing writes as a whole (a whole batch of bad rows is far less likely).
STORE_PROOF_ATTEMPTS = 10


@dataclass
class OneByOne:
    # How far the segment may move: past every row written or set aside.
    passed: Position | None
    dead_lettered: int


def _record_failure(projector: Projector, row: OutboxRow, error: Exception) -> DeadLetter:
    letter, created = DeadLetter.objects.get_or_create(
        projector=projector.name,
        outbox_position=row.position,
        defaults={
            "outbox_xid": row.xid,
            "aggregate_type": row.aggregate_type,
            "aggregate_id": row.aggregate_id,
            "partition_key": row.partition_key,
            "event_type": row.event_type,
            "error": f"{type(error).__name__}: {error}"[:4000],
        },
    )
    if not created:
        letter.attempts += 1
        letter.error = f"{type(error).__name__}: {error}"[:4000]
    if letter.attempts >= config.poison_max_attempts():
        letter.status = DeadLetterStatus.DEAD
    letter.save()
    return letter


def project_one_by_one(projector: Projector, rows: list[OutboxRow]) -> OneByOne:
    """Find the rows to blame; return how far the segment may move (or raise RetryLater).

    Raises StoreUnavailable when the store refuses rows it is asked to take and accepts
    none: then no row is to blame. Elasticsearch is refreshed once, after the pass.
    """
    dead = set(
        DeadLetter.objects.filter(
            projector=projector.name,
            outbox_position__in=[r.position for r in rows],
            status__in=[DeadLetterStatus.DEAD, DeadLetterStatus.DISCARDED],
        ).values_list("outbox_position", flat=True)
    )
    written: set[int] = set()  # positions already written during this pass
    try:
        outcome = _one_by_one_pass(projector, rows, dead, written)
    except RetryLater:
        if written:
            projector.refresh()  # the rows before the failing one are about to be passed
        raise
    if written:
        projector.refresh()
    return outcome


def _one_by_one_pass(projector, rows, dead, written) -> OneByOne:
    outcome = OneByOne(passed=None, dead_lettered=0)
    accepted = False  # the store took at least one row of this batch
    for index, row in enumerate(rows):
        if row.position not in dead and row.position not in written:
            try:
                write_rows(projector, [row], refresh=False)
                written.add(row.position)
                accepted = True
            except Exception as exc:
                if is_outage(exc):
                    raise
                if isinstance(exc, RowsRefused | StoreRefused) and not accepted:
                    # The store refused this row and has taken none yet: is it the row
                    # or the store? Only another row taken says it is the row.
                    accepted = _store_takes_another(projector, rows[index + 1 :], dead, written)
                    if not accepted:
                        raise StoreUnavailable(
                            f"{projector.name}: the store refused every row it was asked "
                            f"to take, e.g. outbox row {row.position}: {exc}"
                        ) from exc
                letter = _record_failure(projector, row, exc)
                if letter.status != DeadLetterStatus.DEAD:
                    logger.warning(
                        "projector %s failed on outbox row %s (attempt %s): %s",
                        projector.name, row.position, letter.attempts, exc,
                    )
                    raise RetryLater(exc, outcome.passed) from exc
                logger.error(
                    "projector %s set outbox row %s aside as a dead letter after %s attempts: %s",
                    projector.name, row.position, letter.attempts, exc,
                )
                outcome.dead_lettered += 1
                metrics.PROJECTION_FAILURES.labels(projector.name, "dead_letter").inc()
        outcome.passed = row.commit_position
    return outcome


def _store_takes_another(projector, rows, dead, written) -> bool:
    """Try the rows after a refused one until the store takes one (True) or refuses
    STORE_PROOF_ATTEMPTS of them, or all (False). Writing ahead of the checkpoint is
    safe: writes are version-gated, and the rows are written again in their turn."""
    refused = 0
    for row in rows:
        if row.position in dead or row.position in written:
            continue
        try:
            write_rows(projector, [row], refresh=False)
        except Exception as exc:
            if is_outage(exc):
                raise
            if isinstance(exc, RowsRefused | StoreRefused):
                refused += 1
                if refused >= STORE_PROOF_ATTEMPTS:
                    return False
            continue  # a row that fails its own load proves nothing about the store
        written.add(row.position)
        return True
    return False
