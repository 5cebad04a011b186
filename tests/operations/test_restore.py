"""After PostgreSQL is restored from a dump into a new cluster, one command makes the
read side whole: views converge, lag is measured afresh, retention works again, and new
commands project as before."""

import io
import json
import time

import pytest
from django.core.management import call_command
from django.db import connection

from orders import commands
from orders.models import Customer, OutboxMessage
from orders.outbox import Position, upkeep
from readmodels import config, projectors
from readmodels.models import Checkpoint
from readmodels.operations import restore, retention, status
from readmodels.pipeline import progress
from readmodels.stores import redis_store
from tests.support.readside import assert_views_fresh, project_all

pytestmark = pytest.mark.django_db(transaction=True)

# The old cluster had run this many more transactions than the new one has.
OLD_CLUSTER_AHEAD_BY = 10**9


def _as_if_restored_into_a_new_cluster() -> None:
    """What a dump restored into a new cluster leaves behind.

    Outbox rows, checkpoints and the progress in Redis keep the old cluster's
    transaction ids, far above the new cluster's counter; the rows are two days old.
    """
    table = OutboxMessage._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET xid = (xid::text::bigint + %s)::text::xid8, "
            "created_at = now() - interval '2 days'",
            [OLD_CLUSTER_AHEAD_BY],
        )
    for checkpoint in Checkpoint.objects.all():
        checkpoint.xid += OLD_CLUSTER_AHEAD_BY
        checkpoint.save()
        progress.publish(
            projector=checkpoint.projector, segment=checkpoint.segment,
            segments=checkpoint.segments,
            checkpoint=Position(checkpoint.xid, checkpoint.position), pending_since=None,
        )
    newest = OutboxMessage.objects.order_by("-position").first()
    for name in projectors.PROJECTORS:
        redis_store.client().set(
            f"{progress.channel(name)}:newest-commit",
            json.dumps({"xid": int(newest.xid), "position": newest.position,
                        "at": time.time() - 2 * 86400}),
        )


def _old_cluster_rows() -> int:
    return OutboxMessage.objects.filter(xid__gte=upkeep.next_xid()).count()


def test_restore_command_brings_the_read_side_back(
    read_models, settings, anon_client, make_customer, make_product, make_order
):
    settings.READMODELS = {**settings.READMODELS, "OUTBOX_RETENTION_DAYS": 1}
    customer = make_customer(balance_cents=100_000)
    products = [make_product(name=f"Lamp {i}") for i in range(3)]
    orders = [make_order(customer=customer, lines=[(p, 1)]) for p in products]
    commands.pay_order(order_id=orders[0].pk)
    project_all()
    _as_if_restored_into_a_new_cluster()
    assert _old_cluster_rows() == OutboxMessage.objects.count() > 0

    call_command("projections", "restore", "--grace-seconds", "0")

    assert _old_cluster_rows() == 0
    assert_views_fresh()
    for row in status.segment_statuses():
        assert (row.rows_behind, row.lag_seconds, row.breached) == (0, 0.0, False), row
    for name in projectors.PROJECTORS:
        assert progress.state(name).lag_ms < config.slo_seconds(name) * 1000
    search = anon_client.get("/api/products/search", {"q": "lamp"})
    assert search.status_code == 200 and search.json()["count"] == 3
    assert search["X-Consistency"] == "eventual"

    # New commands project as before, and readers see their tokens reached.
    placed = commands.place_order(
        customer_id=customer.pk, lines=[commands.LineRequest(products[1].pk, 2)]
    )
    paid = commands.pay_order(order_id=placed.value.pk)
    project_all()
    assert_views_fresh()
    for name in projectors.PROJECTORS:
        state = progress.state(name)
        assert state.covers(paid.position) and state.lag_ms == 0, (name, state)

    # Retention works again: old rows every projector has passed are deleted.
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {OutboxMessage._meta.db_table} SET created_at = now() - interval '2 days'"
        )
    assert retention.purge() > 0
    assert OutboxMessage.objects.count() == 0


def test_restore_keeps_rows_the_new_cluster_writes(read_models, make_product):
    make_product()
    project_all()
    _as_if_restored_into_a_new_cluster()
    new = make_product(name="Written after the restore")

    restore.after_restore(grace_seconds=0)

    assert OutboxMessage.objects.filter(aggregate_id=str(new.pk)).exists()
    project_all()
    assert_views_fresh()


def test_restore_forgets_every_remembered_session_token(read_models, make_customer):
    """Remembered tokens name the old cluster's (higher) positions: kept, they would make
    every session read wait and answer stale until the new cluster caught up."""
    from readmodels import sessions

    customer = make_customer()
    placed = commands.top_up_balance(customer_id=customer.pk, amount_cents=1)
    user_id = Customer.objects.get(pk=customer.pk).user_id
    sessions.remember(user_id=user_id, token=placed.token)
    assert sessions.remembered(user_id) is not None
    call_command("projections", "restore", "--grace-seconds", "0", stdout=io.StringIO())
    assert sessions.remembered(user_id) is None
