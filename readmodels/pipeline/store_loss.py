"""A store that has lost a view (Redis restarted empty, an index deleted): project it again.

The checkpoint says the documents are there, and the outbox may no longer hold the
rows that made them; so every aggregate's current state is projected (version-gated,
like any write) before the runner carries on from its checkpoint.
"""

from __future__ import annotations

import logging
import time

from readmodels import config
from readmodels.models import Checkpoint
from readmodels.projectors import Projector

logger = logging.getLogger(__name__)

# Per process, per read model: when the store was last checked for lost documents.
_checked_at: dict[str, float] = {}


def look_again_soon(projector_name: str) -> None:
    """The store may have lost its documents while it failed: look on the next run."""
    _checked_at.pop(projector_name, None)


def heal_if_store_lost(projector: Projector, checkpoint: Checkpoint) -> None:
    """Re-project every aggregate when the store has lost the view, then carry on.

    Segment 0 does it for the whole view.
    """
    if (checkpoint.xid, checkpoint.position) == (0, 0):
        projector.mark_store_populated()
        return
    # A store round trip per run is a fixed cost paid by every tiny batch under load, so
    # look at most once in a while (and at once after a failure of the store). Documents
    # written to an emptied store in between are re-projected with the rest. How often
    # is the store's own matter (ViewStore.lost_check_sweeps).
    checked = _checked_at.get(projector.name)
    every = config.sweep_interval() * projector.store.lost_check_sweeps
    if checked is not None and time.monotonic() - checked < every:
        return
    lost = projector.store_lost_data()
    _checked_at[projector.name] = time.monotonic()
    if not lost:
        return
    logger.warning(
        "the %s store has lost its documents; re-projecting every aggregate", projector.name
    )
    project_everything(projector)


def project_everything(projector: Projector) -> None:
    """Project every aggregate's current state into the view (version-gated)."""
    projector.store.make_ready(projector.name, projector.mappings)
    healed = 0
    for keys in projector.all_keys(config.batch_size()):
        projector.write(projector.documents_by_key(keys))
        healed += len(keys)
    projector.mark_store_populated()
    logger.warning("re-projected %s documents into %s", healed, projector.name)
