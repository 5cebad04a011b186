"""Bring the read side back after PostgreSQL was restored from a dump into a new cluster.

Transaction ids belong to one cluster. A restored outbox keeps the old cluster's xids,
which can lie far above the new cluster's counter: the reader only passes rows below
its horizon, so such rows are never projected, yet they always count as pending (lag
reads as their age, projected reads fall back or answer 503) and retention never
deletes them. Restored checkpoints, unfinished rebuilds and the progress in Redis
name old-cluster positions too. The procedure:

1. Delete the outbox rows numbered by the old cluster (xid at or above the new
   cluster's next xid). Every one of them was committed before the dump, so its
   change is in the restored tables, and step 3 projects those tables: no projector
   needs the rows. Renumbering them instead would only replay changes the rebuild
   already shows. A row the new cluster writes meanwhile is not touched: its
   transaction is newer than the statement's snapshot, so the statement cannot see it.
2. Set aside rebuilds the old cluster left unfinished: their positions are old xids.
3. Forget every user's remembered session token (they name old-cluster positions).
4. Rebuild every read model from the restored tables. At the switch, with the live
   projector held, its checkpoints are reset to where the new generation has caught
   up to, and its progress in Redis is replaced, so lag is measured afresh.

Safe to run again if it stops half-way, and safe while commands and workers run; but
until it finishes, the restored checkpoints lie ahead of every new command, so run it
before starting them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orders.outbox import upkeep
from readmodels import projectors, sessions
from readmodels.models import Rebuild, RebuildStatus
from readmodels.operations import rebuild

DELETE_BATCH = 10_000


@dataclass
class RestoreResult:
    outbox_rows_deleted: int = 0
    rebuilds_set_aside: int = 0
    session_tokens_forgotten: int = 0
    rebuilt: list[Rebuild] = field(default_factory=list)


def delete_rows_from_the_old_cluster() -> int:
    return upkeep.delete_rows_of_another_cluster(batch_size=DELETE_BATCH)


def set_aside_old_rebuilds() -> int:
    return Rebuild.objects.filter(
        status__in=rebuild.UNFINISHED, caught_up_xid__gte=upkeep.next_xid()
    ).update(
        status=RebuildStatus.FAILED,
        error="set aside after a restore: its positions belong to the old cluster",
    )


def after_restore(
    *,
    batch_size: int = 1000,
    grace_seconds: float | None = None,
    on_progress: rebuild.Progress | None = None,
    on_read_model=None,
) -> RestoreResult:
    result = RestoreResult()
    result.outbox_rows_deleted = delete_rows_from_the_old_cluster()
    result.rebuilds_set_aside = set_aside_old_rebuilds()
    # Every user's remembered token names an old position: with it kept, each session
    # read would wait for a position the new cluster reaches only much later.
    result.session_tokens_forgotten = sessions.forget_everyone()
    for name in projectors.PROJECTORS:
        if on_read_model:
            on_read_model(name)
        result.rebuilt.append(
            rebuild.rebuild(
                name,
                batch_size=batch_size,
                on_progress=on_progress,
                grace_seconds=grace_seconds,
                reset_checkpoints=True,
            )
        )
    return result
