"""Helpers for read-side tests: clean views, run projectors, a real Celery worker."""

from __future__ import annotations

import io
import time

from django.core.management import call_command
from django.db import connection

from orders.models import OutboxMessage
from orders.outbox import Position
from readmodels import config, projectors
from readmodels.pipeline import checkpoints, runner
from readmodels.stores import es, redis_store


def _delete_namespace_keys() -> None:
    client = redis_store.client()
    keys = list(client.scan_iter(match=f"{config.namespace()}:*", count=1000))
    if keys:
        client.delete(*keys)


def _delete_indices(pattern: str) -> None:
    store = es.client()
    # Deletes name their indices: real Elasticsearch refuses wildcard deletes.
    names = list(store.indices.get(index=pattern, allow_no_indices=True))
    if names:
        store.indices.delete(index=",".join(names))


def reset_read_models() -> None:
    """Empty the test namespace's views and progress (the DB flush empties checkpoints)."""
    _delete_namespace_keys()
    for projector in projectors.PROJECTORS.values():
        if projector.store.name == "elasticsearch":
            _delete_indices(f"{es.alias(projector.name)}_v*")
    # The same idempotent command `make run` uses to create the indices.
    call_command("setup_readmodels", stdout=io.StringIO())


def drop_read_models() -> None:
    """Remove this test run's indices and keys (each run has its own namespace)."""
    _delete_namespace_keys()
    _delete_indices(f"{config.namespace()}_*")


def newest_committed() -> Position | None:
    """The commit position of the newest outbox row this connection can see."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT xid::text, position FROM {OutboxMessage._meta.db_table} "
            "ORDER BY xid DESC, position DESC LIMIT 1"
        )
        row = cursor.fetchone()
    return Position(int(row[0]), row[1]) if row else None


def project_all(timeout: float = 60.0, **kwargs) -> dict[str, runner.RunResult]:
    """Run every segment of every projector until it covers every row committed so far.

    "Caught up" for a projector means up to the horizon, and a write transaction
    anywhere in the PostgreSQL cluster (another database, another test run) holds the
    horizon back; so keep running until the newest committed row is covered.
    """
    target = newest_committed()
    deadline = time.monotonic() + timeout
    while True:
        results, behind = {}, []
        for name, projector in projectors.PROJECTORS.items():
            segments = config.segments(name)
            for segment in range(segments):
                while True:
                    result = runner.run_segment(
                        projector, segment, segments, ignore_backoff=True, **kwargs
                    )
                    if result.complete:
                        break
                results[f"{name}[{segment}]"] = result
                checkpoint = checkpoints.checkpoint_for(name, segment, segments)
                if target and not Position(checkpoint.xid, checkpoint.position).covers(target):
                    behind.append(name)
        if not behind:
            return results
        if time.monotonic() > deadline:
            raise AssertionError(f"projectors {behind} did not reach {target} in {timeout} s")
        time.sleep(0.02)


def es_docs(name: str) -> dict[str, tuple[int, dict]]:
    response = es.client().search(
        index=es.alias(name), query={"match_all": {}}, size=10000, version=True
    )
    return {h["_id"]: (h["_version"], h["_source"]) for h in response["hits"]["hits"]}


def redis_docs(name: str) -> dict[str, tuple[int, dict]]:
    import json

    client = redis_store.client()
    prefix = redis_store.doc_key(name, "")
    out = {}
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        version, body = client.hmget(key, ["v", "d"])
        out[key.decode()[len(prefix):]] = (int(version), json.loads(body))
    return out


def view_docs(name: str) -> dict[str, tuple[int, dict]]:
    projector = projectors.get(name)
    return es_docs(name) if projector.store.name == "elasticsearch" else redis_docs(name)


def fresh_docs(name: str) -> dict[str, tuple[int, dict]]:
    """What the view should hold: every document rebuilt from PostgreSQL now."""
    projector = projectors.get(name)
    out = {}
    for keys in projector.all_keys():
        if name == "orders_search":
            docs = projector.load_documents(keys)
        else:
            docs = projector.load(set(keys))
        for doc in docs:
            out[doc.key] = (doc.version, doc.body)
    return out


def assert_views_fresh(*names: str) -> None:
    """The reconcile check: each view holds exactly the documents PostgreSQL gives now."""
    for name in names or tuple(projectors.PROJECTORS):
        view, fresh = view_docs(name), fresh_docs(name)
        missing = sorted(set(fresh) - set(view))[:5]
        stray = sorted(set(view) - set(fresh))[:5]
        differ = sorted(k for k in set(view) & set(fresh) if view[k] != fresh[k])[:5]
        assert view == fresh, (
            f"{name}: {len(view)} documents in the view, {len(fresh)} fresh; "
            f"missing e.g. {missing}, stray e.g. {stray}, different e.g. {differ}"
        )


def checkpoint_position(name: str, segment: int = 0, segments: int = 1) -> Position | None:
    """Where a segment's checkpoint stands (None if it has never run)."""
    from readmodels.models import Checkpoint

    found = Checkpoint.objects.filter(projector=name, segment=segment, segments=segments).first()
    return Position(found.xid, found.position) if found else None


def all_segments_cover(target: Position) -> bool:
    """True when every segment of every projector has a checkpoint covering `target`."""
    for name in projectors.PROJECTORS:
        segments = config.segments(name)
        for segment in range(segments):
            position = checkpoint_position(name, segment, segments)
            if position is None or not position.covers(target):
                return False
    return True


def token_waits_listening(namespace: str) -> bool:
    """Is someone listening for this namespace's order_summary announcements?

    The server's one pattern subscription for token waits, or (a server that waits in
    the request's thread) a subscription of the reader's own.
    """
    from readmodels.pipeline import progress
    from readmodels.stores import redis_store

    redis = redis_store.client()
    if dict(redis.pubsub_numsub(progress.channel("order_summary"))).get(
        progress.channel("order_summary").encode()
    ):
        return True
    return any(c.get("name") == f"{namespace}:token-waits" for c in redis.client_list(_type="pubsub"))
