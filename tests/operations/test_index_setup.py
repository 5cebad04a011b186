"""Elasticsearch indices are made whole (mappings, hash, alias in one request), and a deploy
whose mappings changed is stopped or rebuilt before strict mappings refuse every row."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from orders import commands
from readmodels import projectors
from readmodels.projectors.products_search import MAPPINGS
from readmodels.stores import es
from tests.support.readside import es_docs, fresh_docs, project_all

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "products_search"


def _drop_indices() -> None:
    store = es.client()
    names = list(store.indices.get(index=f"{es.alias(MODEL)}_v*", allow_no_indices=True))
    if names:
        store.indices.delete(index=",".join(names))


def _older_release_index(mappings: dict) -> str:
    """The index as an older release made it: its own mappings, alias attached."""
    _drop_indices()
    index = es.index_name(MODEL, 1)
    es.client().indices.create(
        index=index, mappings=mappings, settings=es.INDEX_SETTINGS, aliases={es.alias(MODEL): {}}
    )
    return index


def _setup(*args: str) -> str:
    out = io.StringIO()
    call_command("setup_readmodels", *args, stdout=out)
    return out.getvalue()


def test_setup_makes_every_index_with_its_alias_and_mapping_hash(read_models):
    for projector in projectors.PROJECTORS.values():
        if projector.store.name != "elasticsearch":
            continue
        index = es.current_index(projector.name)
        assert index == es.index_name(projector.name, 1)
        assert es.stored_mapping_hash(projector.name) == es.mapping_hash(projector.mappings)
    # Running it again changes nothing.
    assert f"{es.alias(MODEL)} -> {es.index_name(MODEL, 1)}" in _setup()


def test_an_index_left_without_its_alias_is_served_again(read_models):
    _drop_indices()
    index = es.index_name(MODEL, 1)
    es.client().indices.create(index=index, mappings=MAPPINGS, settings=es.INDEX_SETTINGS)
    assert es.current_index(MODEL) is None
    assert es.ensure_index(MODEL, MAPPINGS) == index
    assert es.current_index(MODEL) == index


def test_a_changed_mapping_stops_the_deploy_with_a_clear_message(read_models):
    older = {**MAPPINGS, "properties": {k: v for k, v in MAPPINGS["properties"].items()
                                         if k != "updated_at"}}
    _older_release_index({**older, "_meta": {"mapping_hash": es.mapping_hash(older)}})
    with pytest.raises(CommandError) as refused:
        _setup()
    message = str(refused.value)
    assert MODEL in message
    assert "--rebuild-on-mapping-change" in message
    # Nothing was changed behind the operator's back.
    assert es.current_index(MODEL) == es.index_name(MODEL, 1)


def test_an_index_made_before_mapping_hashes_counts_as_changed(read_models):
    _older_release_index(MAPPINGS)
    with pytest.raises(CommandError, match=MODEL):
        _setup()


def test_rebuild_on_mapping_change_moves_the_view_to_an_index_with_the_new_mappings(
    read_models, make_product
):
    older = {**MAPPINGS, "properties": {k: v for k, v in MAPPINGS["properties"].items()
                                         if k != "updated_at"}}
    _older_release_index({**older, "_meta": {"mapping_hash": es.mapping_hash(older)}})
    products = [make_product(name=f"Lamp {i}") for i in range(3)]
    commands.restock_product(product_id=products[0].pk, quantity=1)

    output = _setup("--rebuild-on-mapping-change")

    assert "rebuilding" in output
    assert es.current_index(MODEL) == es.index_name(MODEL, 2)
    assert es.stored_mapping_hash(MODEL) == es.mapping_hash(MAPPINGS)
    project_all()
    assert es_docs(MODEL) == fresh_docs(MODEL)
    assert len(es_docs(MODEL)) == 3
