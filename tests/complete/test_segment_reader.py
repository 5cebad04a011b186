"""The outbox reader splits rows into segments by partition key, each key in one segment."""

import pytest

from orders import commands, outbox
from orders.outbox import Position

pytestmark = pytest.mark.django_db(transaction=True)  # rows are read after COMMIT


def test_segments_partition_the_rows_and_keep_a_key_together(make_customer, make_product):
    product = make_product(stock=1000)
    customers = [make_customer(balance_cents=1000) for _ in range(12)]
    for customer in customers:
        for _ in range(2):
            commands.place_order(customer_id=customer.pk, lines=[commands.LineRequest(product.pk, 1)])
    everything = outbox.read_after(Position.start(), limit=10_000, aggregate_types=["order"]).rows
    seen: dict[int, list[int]] = {}
    for index in range(3):
        batch = outbox.read_after(
            Position.start(), limit=10_000, aggregate_types=["order"], segment=(index, 3)
        )
        seen[index] = [row.position for row in batch.rows]
        keys = {row.partition_key for row in batch.rows}
        for other in range(index):
            assert not keys & {
                r.partition_key for r in everything if r.position in seen[other]
            }
    assert sorted(p for positions in seen.values() for p in positions) == sorted(
        r.position for r in everything
    )
    assert sum(1 for positions in seen.values() if positions) >= 2
