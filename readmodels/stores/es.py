"""Elasticsearch: the client, versioned indices behind aliases, version-gated bulk writes.

Each read model lives in an index named `<namespace>_<model>_v<N>` behind the alias
`<namespace>_<model>`; reads and writes go through the alias, so a rebuild can fill a
new index and swap the alias atomically.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass
from typing import NoReturn

import elastic_transport
from django.conf import settings
from elasticsearch import ApiError, Elasticsearch, helpers

from readmodels import config
from readmodels.stores import Doc, StoreSlow, StoreUnavailable, read_deadline

CONNECTION_ERRORS = (
    elastic_transport.ConnectionError,
    elastic_transport.ConnectionTimeout,
    elastic_transport.TransportError,
)


def unavailable(exc: Exception) -> StoreUnavailable:
    """The store's failure as the runner must see it: a timeout is slow, not down."""
    if isinstance(exc, elastic_transport.ConnectionTimeout):
        return StoreSlow(f"Elasticsearch timed out: {exc}")
    return StoreUnavailable(f"Elasticsearch: {exc}")


def store_wide(status: int | None) -> bool:
    """True when an answer refuses the index or cluster as a whole, not one document.

    403 is a block (index.blocks.write; a cluster_block_exception), 429 overload or the
    read_only_allow_delete block Elasticsearch sets at the flood-stage disk watermark,
    408 a timeout, 5xx the cluster's own trouble, 404 a missing index or alias (an
    operator's matter). None of these says anything about the document, so no row may
    be blamed for them.
    """
    return status is not None and (status in (403, 404, 408, 429) or status >= 500)


def _raise_mapped(exc: ApiError) -> NoReturn:
    if store_wide(exc.meta.status):
        raise StoreUnavailable(f"Elasticsearch answered {exc.meta.status}: {exc}") from exc
    raise exc


@functools.lru_cache(maxsize=4)
def _client(url: str, timeout: float) -> Elasticsearch:
    return Elasticsearch(url, request_timeout=timeout, max_retries=0, retry_on_timeout=False)


def client() -> Elasticsearch:
    es = _client(settings.ELASTICSEARCH_URL, config.store_timeout())
    deadline = read_deadline.get()
    if deadline is not None:
        # Inside a projected read: the request ends by its deadline, not the store's.
        return es.options(request_timeout=max(deadline - time.monotonic(), 0.05))
    return es


def alias(model: str) -> str:
    return f"{config.namespace()}_{model}"


def index_name(model: str, generation: int) -> str:
    return f"{alias(model)}_v{generation}"


INDEX_SETTINGS = {"number_of_shards": 1, "number_of_replicas": 0}


def mapping_hash(mappings: dict) -> str:
    """A stable digest of a read model's mappings (its `_meta` left out)."""
    canonical = json.dumps(
        {k: v for k, v in mappings.items() if k != "_meta"}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _with_hash(mappings: dict) -> dict:
    # The hash travels in the index's own `_meta`, so the index says which mappings it
    # was made with and a deploy can tell a changed mapping before any row is refused.
    meta = {**mappings.get("_meta", {}), "mapping_hash": mapping_hash(mappings)}
    return {**mappings, "_meta": meta}


def _already_exists(exc: ApiError) -> bool:
    return exc.meta.status == 400 and "resource_already_exists" in str(exc)


def ensure_index(model: str, mappings: dict, settings_: dict | None = None) -> str:
    """Create the first versioned index and its alias unless the alias exists.

    Index and alias come in one request: there is never an index without its alias for
    a writer to miss, nor an alias pointing at an index made by someone else. Workers
    racing to do it are fine: the loser sees the winner's alias.
    """
    es = client()
    name = alias(model)
    index = index_name(model, 1)
    try:
        found = current_index(model)
        if found:
            return found
        try:
            es.indices.create(
                index=index,
                mappings=_with_hash(mappings),
                settings=settings_ or INDEX_SETTINGS,
                aliases={name: {}},
            )
        except ApiError as exc:
            if not _already_exists(exc):
                raise
            found = current_index(model)
            if found:
                return found
            # An index left without its alias by an older release: serve it again; the
            # mapping check in setup_readmodels says whether it needs a rebuild.
            es.indices.update_aliases(actions=[{"add": {"index": index, "alias": name}}])
        return index
    except CONNECTION_ERRORS as exc:
        raise unavailable(exc) from exc


def stored_mapping_hash(model: str) -> str | None:
    """The mapping hash in the live index's `_meta` (None if the index predates hashes)."""
    try:
        found = client().indices.get_mapping(index=alias(model))
    except CONNECTION_ERRORS as exc:
        raise StoreUnavailable(f"Elasticsearch: {exc}") from exc
    mappings = next(iter(found.values()), {}).get("mappings", {})
    return mappings.get("_meta", {}).get("mapping_hash")


@dataclass
class BulkResult:
    written: int
    stale: int
    # Document key -> error, for documents the store refused for their own reasons.
    failed: dict[str, str]


def bulk_write(
    model: str, docs: list[Doc], index: str | None = None, *, refresh: bool = True
) -> BulkResult:
    """Index documents with external versioning, searchable when the request returns.

    `refresh=False` leaves the refresh to the caller (`refresh()`), who writes many
    small bulks in a row and needs them searchable only once they are all written.

    A version conflict means the store already holds this or a newer version (a
    duplicate or a replay): that is success, never a step backwards.
    """
    if not docs:
        return BulkResult(0, 0, {})
    es = client()
    target = index or alias(model)
    actions = [
        {
            "_op_type": "index",
            "_index": target,
            "_id": doc.key,
            "version": doc.version,
            "version_type": "external",
            "_source": doc.body,
        }
        for doc in docs
    ]
    written, stale, failed = 0, 0, {}
    try:
        # require_alias: writing to a missing alias must fail, not auto-create an index
        # with guessed mappings under the alias's name.
        for ok, item in helpers.streaming_bulk(
            es,
            actions,
            raise_on_error=False,
            raise_on_exception=True,
            chunk_size=1000,
            require_alias=index is None,
            # Searchable, not only stored, before anyone's checkpoint passes these rows:
            # refreshed by the bulk request itself, not by a second round trip.
            **({"refresh": "true"} if refresh else {}),
        ):
            result = item.get("index", {})
            if ok:
                written += 1
            elif result.get("status") == 409:
                stale += 1
            elif store_wide(result.get("status")):
                # A missing index, a write block, overload or the cluster's own error:
                # the store refuses writes as a whole, so the rows keep their checkpoint.
                raise StoreUnavailable(
                    f"Elasticsearch refused the bulk ({result.get('status')}): "
                    f"{result.get('error')}"
                )
            else:
                failed[str(result.get("_id"))] = str(result.get("error"))
    except CONNECTION_ERRORS as exc:
        raise unavailable(exc) from exc
    except ApiError as exc:
        _raise_mapped(exc)
    return BulkResult(written, stale, failed)


def refresh(model: str) -> None:
    """Make what was written to the view searchable."""
    try:
        client().indices.refresh(index=alias(model))
    except CONNECTION_ERRORS as exc:
        raise StoreUnavailable(f"Elasticsearch: {exc}") from exc
    except ApiError as exc:
        _raise_mapped(exc)


def get_versions(model: str, keys: list[str]) -> dict[str, int]:
    """Return the stored version of each key that exists."""
    if not keys:
        return {}
    try:
        response = client().mget(index=alias(model), ids=keys, source=False)
    except CONNECTION_ERRORS as exc:
        raise unavailable(exc) from exc
    except ApiError as exc:
        _raise_mapped(exc)
    return {d["_id"]: d["_version"] for d in response["docs"] if d.get("found")}


def search(model: str, **body):
    try:
        return client().search(index=alias(model), **body)
    except CONNECTION_ERRORS as exc:
        raise unavailable(exc) from exc
    except ApiError as exc:
        # A missing index, overload or a 5xx: readers degrade (fallback or 503), never a
        # 500. A 400 (a query the shop built wrong) stays an error.
        _raise_mapped(exc)


def current_index(model: str) -> str | None:
    try:
        found = client().indices.get_alias(name=alias(model), ignore_unavailable=True)
    except CONNECTION_ERRORS as exc:
        raise unavailable(exc) from exc
    except ApiError as exc:
        if exc.meta.status == 404:
            return None
        _raise_mapped(exc)
    return next(iter(found), None)


def generation_of(index: str) -> int:
    return int(index.rsplit("_v", 1)[1])


def create_index(model: str, generation: int, mappings: dict) -> str:
    """Create a versioned index, with the mapping hash in its `_meta`, unless it exists."""
    index = index_name(model, generation)
    es = client()
    try:
        es.indices.create(index=index, mappings=_with_hash(mappings), settings=INDEX_SETTINGS)
    except CONNECTION_ERRORS as exc:
        raise unavailable(exc) from exc
    except ApiError as exc:
        # A resumed rebuild finds its own index from the first attempt.
        if not _already_exists(exc):
            raise
    return index


def swap_alias(model: str, new_index: str) -> str | None:
    """Point the alias at new_index in one atomic request; return the old index."""
    old = current_index(model)
    actions = [{"add": {"index": new_index, "alias": alias(model)}}]
    if old and old != new_index:
        actions.insert(0, {"remove": {"index": old, "alias": alias(model)}})
    try:
        client().indices.update_aliases(actions=actions)
    except CONNECTION_ERRORS as exc:
        raise unavailable(exc) from exc
    return old


def drop_index(index: str) -> None:
    try:
        client().indices.delete(index=index, ignore_unavailable=True)
    except CONNECTION_ERRORS as exc:
        raise unavailable(exc) from exc


def iter_ids(model: str, batch_size: int = 1000):
    """Yield the ids of every document in the view, in batches (scroll; no sort on _id)."""
    try:
        batch = []
        for hit in helpers.scan(
            client(), index=alias(model), query={"query": {"match_all": {}}}, _source=False,
            size=batch_size,
        ):
            batch.append(hit["_id"])
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
    except CONNECTION_ERRORS as exc:
        raise unavailable(exc) from exc
    except ApiError as exc:
        _raise_mapped(exc)


def delete_ids(model: str, ids: list[str]) -> None:
    if not ids:
        return
    actions = [{"_op_type": "delete", "_index": alias(model), "_id": i} for i in ids]
    try:
        helpers.bulk(client(), actions, raise_on_error=False)
        client().indices.refresh(index=alias(model))
    except CONNECTION_ERRORS as exc:
        raise unavailable(exc) from exc
    except ApiError as exc:
        _raise_mapped(exc)
