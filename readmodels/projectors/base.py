"""What a projector is: the aggregates it consumes, a batched loader, a builder, a writer.

CQRS without event sourcing: an outbox row only says which aggregate changed. The
projector loads that aggregate's current state from PostgreSQL (a fixed number of
queries per batch, never one per row) and rebuilds whole documents, so a duplicate
or a replay converges instead of applying a delta twice.
"""

from __future__ import annotations

from collections.abc import Iterable

from orders.outbox import OutboxRow
from readmodels.stores import Doc
from readmodels.stores.adapters import ViewStore


class Projector:
    name: str
    store: ViewStore
    consumes: tuple[str, ...]
    # The Elasticsearch mappings of the view's index (None for a store without any).
    mappings: dict | None = None

    def keys_for(self, rows: Iterable[OutboxRow]) -> set[str]:
        """Return the document keys the rows touch (may need no database at all)."""
        raise NotImplementedError

    def load(self, keys: set[str]) -> list[Doc]:
        """Build the current documents of these keys from PostgreSQL, in batched queries."""
        raise NotImplementedError

    def documents_for(self, rows: list[OutboxRow]) -> list[Doc]:
        return self.load(self.keys_for(rows))

    def document_batches(self, rows: list[OutboxRow], size: int) -> Iterable[list[Doc]]:
        """Yield the rows' documents in lists of about `size` (a row may touch many)."""
        yield self.documents_for(rows)

    def documents_by_key(self, keys: list[str]) -> list[Doc]:
        """Build the current documents of these document keys (rebuild, reconcile, fallback)."""
        return self.load(set(keys))

    def write(
        self, docs: list[Doc], generation: int | None = None, *, refresh: bool = True
    ) -> dict[str, str]:
        """Write version-gated; return the keys the store refused, with the reason.

        `generation` writes into that index or key generation instead of the live one
        (a rebuild in progress). `refresh=False`: searchable only after `refresh()`.
        """
        return self.store.write(self.name, docs, generation=generation, refresh=refresh)

    def refresh(self) -> None:
        """Make every write so far visible to readers (Redis writes are at once)."""
        self.store.refresh(self.name)

    def stored_versions(self, keys: list[str]) -> dict[str, int]:
        return self.store.stored_versions(self.name, keys)

    def stored_keys(self) -> Iterable[list[str]]:
        """Yield the keys of every document the live view holds, in batches."""
        return self.store.stored_keys(self.name)

    def delete(self, keys: list[str]) -> None:
        self.store.delete(self.name, keys)

    def store_lost_data(self) -> bool:
        """True when the store has lost this view (Redis restarted empty, index gone)."""
        return self.store.lost(self.name)

    def mark_store_populated(self) -> None:
        self.store.mark_populated(self.name, self.mappings)

    def all_keys(self, batch_size: int = 1000, after: str | None = None) -> Iterable[list[str]]:
        """Yield every key of the read model in key order, in batches, after `after`."""
        raise NotImplementedError

    def key_exists(self, keys: list[str]) -> set[str]:
        """Return which of these keys should have a document (their aggregate exists)."""
        raise NotImplementedError


def keys_in_order(queryset, batch_size: int, after, parse) -> Iterable[list[str]]:
    """Page through a model's primary keys in order, starting after `after`."""
    last = parse(after) if after is not None else None
    while True:
        query = queryset.order_by("pk")
        if last is not None:
            query = query.filter(pk__gt=last)
        ids = list(query.values_list("pk", flat=True)[:batch_size])
        if not ids:
            return
        yield [str(i) for i in ids]
        last = ids[-1]


def chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
