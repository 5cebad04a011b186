"""Outbox retention: only old rows every projector segment has passed, never one a dead letter needs."""

from __future__ import annotations

import pytest

from orders.models import OutboxMessage
from readmodels import projectors
from readmodels.models import DeadLetter, DeadLetterStatus
from readmodels.operations import retention
from tests.support.operating import (
    age_outbox,
    catch_up,
    change_readmodels_settings,
    covers,
    outbox_rows,
    run_projector,
)
from tests.support.readside import newest_committed, project_all

pytestmark = pytest.mark.django_db(transaction=True)


def test_purge_deletes_only_old_rows_every_projector_has_passed(
    read_models, settings, make_product
):
    change_readmodels_settings(settings, OUTBOX_RETENTION_DAYS=1)
    old, young, dead_ref, retrying_ref, resolved_ref = (make_product() for _ in range(5))
    rows = {
        name: [r.position for r in outbox_rows("product", p.pk)]
        for name, p in [
            ("old", old), ("young", young), ("dead_ref", dead_ref),
            ("retrying_ref", retrying_ref), ("resolved_ref", resolved_ref),
        ]
    }
    for name, letter_status in [
        ("dead_ref", DeadLetterStatus.DEAD),
        ("retrying_ref", DeadLetterStatus.RETRYING),
        ("resolved_ref", DeadLetterStatus.RESOLVED),
    ]:
        row = OutboxMessage.objects.get(position=rows[name][0])
        DeadLetter.objects.create(
            projector="products_search", outbox_position=row.position, outbox_xid=row.xid,
            aggregate_type="product", aggregate_id=row.aggregate_id,
            partition_key=row.partition_key, event_type=row.event_type, error="x",
            status=letter_status,
        )
    project_all()
    # A row one projector has not passed yet: every other projector runs past it.
    unpassed = make_product()
    rows["unpassed"] = [r.position for r in outbox_rows("product", unpassed.pk)]
    catch_up(name for name in projectors.PROJECTORS if name != "order_summary")
    assert not covers("order_summary", newest_committed())
    age_outbox(
        "2 days",
        [p for name, positions in rows.items() if name != "young" for p in positions],
    )

    deleted = retention.purge()

    remaining = set(OutboxMessage.objects.values_list("position", flat=True))
    gone = {name for name, positions in rows.items() if not set(positions) & remaining}
    assert gone == {"old", "resolved_ref"}
    assert deleted == len(rows["old"]) + len(rows["resolved_ref"])
    for name in ("young", "dead_ref", "retrying_ref", "unpassed"):
        assert set(rows[name]) <= remaining, name

    # Once the last projector passes it, the old row goes too.
    catch_up(["order_summary"])
    assert retention.purge() == len(rows["unpassed"])
    assert not set(rows["unpassed"]) & set(OutboxMessage.objects.values_list("position", flat=True))


def test_purge_deletes_nothing_while_a_projector_has_no_checkpoint(
    read_models, settings, make_product
):
    change_readmodels_settings(settings, OUTBOX_RETENTION_DAYS=1)
    for _ in range(3):
        make_product()
    age_outbox("2 days")
    total = OutboxMessage.objects.count()
    assert total >= 3

    assert retention.purge() == 0  # no projector has ever run
    run_projector("products_search")
    assert retention.safe_horizon() is None
    assert retention.purge() == 0  # the others have not
    assert OutboxMessage.objects.count() == total

    project_all()
    assert retention.purge() == total
    assert OutboxMessage.objects.count() == 0


def test_purge_keeps_rows_a_redis_view_s_own_report_has_not_passed(read_models, settings,
                                                                   make_product):
    """A Redis that came back older holds less than the checkpoints say: the rows after
    what it holds are re-read from the outbox, so retention keeps them."""
    from orders.outbox import Position
    from readmodels.pipeline import progress
    from readmodels.stores import redis_store

    change_readmodels_settings(settings, OUTBOX_RETENTION_DAYS=1)
    make_product()
    project_all()
    assert retention.safe_horizon() > (0, 0)
    # What a restart from an older snapshot leaves: the view's report at the start.
    redis_store.client().delete(f"{progress.channel('order_summary')}:0of1")
    progress.publish(projector="order_summary", segment=0, segments=1,
                     checkpoint=Position.start(), pending_since=None)
    age_outbox("2 days")
    assert retention.safe_horizon() == (0, 0)
    assert retention.purge() == 0
