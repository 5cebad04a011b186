"""Nothing after the commit turns a committed command into an error.

After a command commits, the shop remembers the user's token for session consistency,
wakes the projectors and counts the command: best-effort steps on Redis. A Redis that
refuses writes as a whole (each kind of error reply it gives, on a throwaway
redis-server) must leave the command's answer alone: 201 with its token, once; a retry
with the same Idempotency-Key replays it, and no second order is placed.
"""

from __future__ import annotations

import uuid

import pytest

from orders.models import Order
from tests.support.processes import REFUSALS, REFUSING_SERVER_ARGS, redis_refusal, throwaway_redis

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("kind", REFUSALS)
def test_a_store_that_refuses_after_the_commit_leaves_the_command_s_answer_alone(
    settings, customer, customer_client, make_product, kind
):
    product = make_product()
    with throwaway_redis(*REFUSING_SERVER_ARGS) as server:
        settings.REDIS_URL = server.url
        refuse, repair = redis_refusal(server, kind)
        refuse()
        try:
            key = f"order-{uuid.uuid4()}"
            body = {"lines": [{"product_id": product.pk, "quantity": 1}]}
            first = customer_client.post("/api/orders", body, format="json",
                                         HTTP_IDEMPOTENCY_KEY=key)
            retried = customer_client.post("/api/orders", body, format="json",
                                           HTTP_IDEMPOTENCY_KEY=key)
        finally:
            repair()

    assert first.status_code == 201, first.content
    assert first["X-Consistency-Token"]
    assert retried.status_code == 201, retried.content
    assert retried["Idempotent-Replayed"] == "true"
    assert retried.json()["id"] == first.json()["id"]
    assert Order.objects.filter(customer=customer).count() == 1
