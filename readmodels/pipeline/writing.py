"""Writing outbox rows into a view: load the aggregates' current state, write version-gated.

The documents are built from PostgreSQL as it is now (CQRS without event sourcing), in
bounded lists, and written to the projector's store outside any database transaction.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from orders.outbox import OutboxRow
from readmodels import config, metrics
from readmodels.pipeline.failures import INFRASTRUCTURE_ERRORS, RowsRefused, StoreRefused
from readmodels.projectors import Projector

logger = logging.getLogger(__name__)


def write_rows(projector: Projector, rows: list[OutboxRow], *, refresh: bool = True) -> None:
    """Load and write the rows' documents (in bounded lists); refresh once at the end.

    Errors of the load propagate as they are; errors of the store's write that are not
    an outage come as StoreRefused or RowsRefused, so callers know the store saw them.
    """
    wrote = refreshed = False
    batches = iter(projector.document_batches(rows, config.batch_size()))
    docs = next(batches, None)
    while docs is not None:
        following = next(batches, None)
        # The last write refreshes as it writes: one round trip less per batch.
        last = refresh and following is None and bool(docs)
        try:
            refused = projector.write(docs, refresh=last)
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception as exc:
            raise StoreRefused(f"{type(exc).__name__}: {exc}") from exc
        wrote, refreshed = wrote or bool(docs), last
        if refused:
            key, reason = next(iter(refused.items()))
            raise RowsRefused(f"{len(refused)} document(s) refused, e.g. {key}: {reason}")
        docs = following
    if refresh and wrote and not refreshed:
        projector.refresh()
    # Visible now (Elasticsearch was refreshed by the write): measure from each row's
    # creation, which includes any time the row waited behind an older transaction.
    now = timezone.now()
    histogram = metrics.COMMIT_TO_VISIBLE.labels(projector.name)
    for row in rows:
        histogram.observe(max(0.0, (now - row.created_at).total_seconds()))
    metrics.ROWS_PROJECTED.labels(projector.name).inc(len(rows))
    logger.info(
        "projected %s outbox rows into %s",
        len(rows),
        projector.name,
        extra={
            "read_model": projector.name,
            "positions": [rows[0].position, rows[-1].position],
            # Follows each command (its request) into the view that now shows it.
            "request_ids": sorted({row.request_id for row in rows if row.request_id}),
        },
    )
