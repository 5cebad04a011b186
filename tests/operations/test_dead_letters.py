"""Dead letters: a poison row is set aside after its attempts; retry and discard from the command line."""

from __future__ import annotations

import json

import pytest

from readmodels import queries
from readmodels.models import DeadLetter, DeadLetterStatus
from tests.support.operating import (
    change_readmodels_settings,
    dead_letter_for,
    poison_row,
    projections_command,
    run_until_dead,
)
from tests.support.readside import project_all

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_poison_row_becomes_a_dead_letter_that_can_be_retried_and_discarded(
    read_models, settings, make_order
):
    change_readmodels_settings(settings, POISON_MAX_ATTEMPTS=2)
    order = make_order()
    poison = poison_row()
    after = make_order()

    letter = run_until_dead(poison.position)
    assert letter.attempts == 2
    assert letter.aggregate_id == "not-a-uuid"
    assert "not an order id" in letter.error
    # The segment moved on: the orders on either side of the poison row are visible.
    project_all()
    assert queries.order_summary(str(order.pk)) is not None
    assert queries.order_summary(str(after.pk)) is not None
    status_json = json.loads(projections_command("status", "--json")[1])
    assert {e["dead_letters"] for e in status_json if e["read_model"] == "order_summary"} == {1}

    # Every projector of orders that fails on the row has set it aside too.
    others = DeadLetter.objects.filter(outbox_position=poison.position).exclude(pk=letter.pk)
    assert {d.status for d in others} <= {DeadLetterStatus.DEAD}

    code, listed = projections_command("deadletters")
    assert code == 0
    assert f"#{letter.pk} order_summary outbox {poison.position} order:not-a-uuid attempts 2" in listed
    assert len(listed.strip().splitlines()) == 1 + others.count()

    _, retried = projections_command("deadletters", "--retry")
    lines = retried.strip().splitlines()
    assert len(lines) == 1 + others.count()
    assert all(line.endswith("retried: failed again") for line in lines), lines
    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.DEAD
    assert letter.attempts == 3
    assert "not an order id" in letter.error

    _, filtered = projections_command("deadletters", "--projector", "products_search")
    assert filtered.strip() == "no dead letters"

    _, discarded = projections_command("deadletters", "--discard", "--id", str(letter.pk))
    [line] = discarded.strip().splitlines()
    assert line.startswith(f"#{letter.pk} order_summary ") and line.endswith("discarded")
    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.DISCARDED
    assert projections_command("deadletters", "--projector", "order_summary")[1].strip() == "no dead letters"
    projections_command("deadletters", "--discard")
    assert projections_command("deadletters")[1].strip() == "no dead letters"
    # Discarded rows are skipped on a replay as well: projection carries on.
    project_all()


def test_retrying_a_dead_letter_whose_cause_is_gone_resolves_it(read_models, make_order):
    order = make_order()
    letter = dead_letter_for(order)
    assert queries.order_summary(str(order.pk)) is None

    code, output = projections_command("deadletters", "--retry")

    assert code == 0
    assert f"#{letter.pk} order_summary" in output and "retried: ok" in output
    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.RESOLVED
    version, doc = queries.order_summary(str(order.pk))
    order.refresh_from_db()
    assert version == order.version
    assert doc["id"] == str(order.pk)
    assert projections_command("deadletters")[1].strip() == "no dead letters"
