"""Which PostgreSQL cluster the outbox positions belong to.

Transaction ids belong to one cluster: after a dump is restored into a new cluster, the
xids start again below the old ones, and a position of the old cluster says nothing of
the new one. The cluster's system identifier (set by initdb, the same on its physical
replicas) names it; tokens and progress reports carry it so that a position of another
cluster is never waited for.
"""

from __future__ import annotations

import functools

from django.db import connection


@functools.cache
def _identifier(alias_key: tuple) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT system_identifier::text FROM pg_control_system()")
        return cursor.fetchone()[0]


def cluster_id() -> str:
    """This database's cluster (read once per process and database)."""
    settings = connection.settings_dict
    return _identifier((settings.get("HOST"), settings.get("PORT"), settings.get("NAME")))
