"""The stores that hold views, behind one small interface: Elasticsearch and Redis.

A projector names its store (`Projector.store`); the pipeline and the operations ask
the store, never which store it is. The clients themselves (connections, timeouts,
version-gated writes, generations) are in readmodels.stores.es and
readmodels.stores.redis_store.
"""

from __future__ import annotations

from collections.abc import Iterable

from readmodels.stores import Doc, es, redis_store


class ViewStore:
    """What the projection pipeline and the operations need of a store of views.

    `model` is a read model's name; `generation` a rebuild's index or key generation
    (None: the live one).
    """

    name: str
    # How many sweep intervals pass between two looks for a store that lost the view.
    lost_check_sweeps: int
    # True when a refresh costs more as the view grows: a busy projector waits as long
    # as its last pass took before the next one, so that batches grow with the cost.
    linger_like_a_pass: bool
    # True when the views' progress reports live in this store too (Redis): a report is
    # then written after the documents it covers, and kept only while the store holds
    # what it builds on, so a store that comes back older is seen by its own reports.
    holds_progress: bool

    def write(self, model: str, docs: list[Doc], *, generation: int | None = None,
              refresh: bool = True) -> dict[str, str]:
        """Write version-gated; return the keys the store refused, with the reason."""
        raise NotImplementedError

    def refresh(self, model: str) -> None:
        """Make every write so far visible to readers."""

    def stored_versions(self, model: str, keys: list[str]) -> dict[str, int]:
        raise NotImplementedError

    def stored_keys(self, model: str) -> Iterable[list[str]]:
        """Yield the keys of every document the live view holds, in batches."""
        raise NotImplementedError

    def delete(self, model: str, keys: list[str]) -> None:
        raise NotImplementedError

    def lost(self, model: str) -> bool:
        """True when the store has lost the view (restarted empty, index gone)."""
        raise NotImplementedError

    def make_ready(self, model: str, mappings: dict | None) -> None:
        """Make the store able to hold the view again (before re-projecting it)."""

    def mark_populated(self, model: str, mappings: dict | None) -> None:
        """Record that the store holds the view (after projecting it)."""
        raise NotImplementedError

    def live_generation(self, model: str) -> int:
        raise NotImplementedError

    def create_generation(self, model: str, generation: int, mappings: dict | None) -> None:
        """Make room for a rebuild's new generation."""

    def switch_to(self, model: str, generation: int) -> None:
        """Serve the view from `generation`, atomically (idempotent)."""
        raise NotImplementedError

    def drop_generation(self, model: str, generation: int) -> None:
        raise NotImplementedError


class ElasticsearchViews(ViewStore):
    name = "elasticsearch"
    # A lost index also fails the next bulk write (it requires the alias), which asks
    # for a look at once; and on the one-at-a-time dev server each look waits in line
    # with the writes. So look seldom.
    lost_check_sweeps = 30
    # A refresh's cost grows with the index on the dev server (and every refresh is a
    # new segment on a real one).
    linger_like_a_pass = True
    # Acknowledged writes are durable there (translog fsynced per request, replicas with
    # wait_for_active_shards): its progress is not checked against the store.
    holds_progress = False

    def write(self, model, docs, *, generation=None, refresh=True):
        index = es.index_name(model, generation) if generation else None
        return es.bulk_write(model, docs, index=index, refresh=refresh).failed

    def refresh(self, model):
        es.refresh(model)

    def stored_versions(self, model, keys):
        return es.get_versions(model, keys)

    def stored_keys(self, model):
        return es.iter_ids(model)

    def delete(self, model, keys):
        es.delete_ids(model, keys)

    def lost(self, model):
        return es.current_index(model) is None

    def make_ready(self, model, mappings):
        es.ensure_index(model, mappings)

    def mark_populated(self, model, mappings):
        # The index behind its alias is the mark: a lost index is a lost view.
        es.ensure_index(model, mappings)

    def live_generation(self, model):
        index = es.current_index(model)
        return es.generation_of(index) if index else 0

    def create_generation(self, model, generation, mappings):
        es.create_index(model, generation, mappings)

    def switch_to(self, model, generation):
        es.swap_alias(model, es.index_name(model, generation))

    def drop_generation(self, model, generation):
        es.drop_index(es.index_name(model, generation))


class RedisViews(ViewStore):
    name = "redis"
    lost_check_sweeps = 1
    # A Redis write costs the same at any size: a longer pass means a busy CPU, and
    # waiting longer would only add lag.
    linger_like_a_pass = False
    holds_progress = True

    def write(self, model, docs, *, generation=None, refresh=True):
        redis_store.write_documents(model, docs, gen=generation)
        return {}

    def stored_versions(self, model, keys):
        return redis_store.read_versions(model, keys)

    def stored_keys(self, model):
        return redis_store.iter_keys(model)

    def delete(self, model, keys):
        redis_store.delete_keys(model, keys)

    def lost(self, model):
        return redis_store.lost_data(model)

    def mark_populated(self, model, mappings):
        redis_store.mark_populated(model)

    def live_generation(self, model):
        return redis_store.generation(model)

    def switch_to(self, model, generation):
        redis_store.set_generation(model, generation)

    def drop_generation(self, model, generation):
        redis_store.drop_generation(model, generation)


ELASTICSEARCH = ElasticsearchViews()
REDIS = RedisViews()
BY_NAME: dict[str, ViewStore] = {store.name: store for store in (ELASTICSEARCH, REDIS)}
