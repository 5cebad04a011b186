"""Idempotency-Key: the first response is stored with the command and replayed on retries."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from orders import commands, idempotency
from orders.models import IdempotencyKey, Order, OrderLine, OutboxMessage, Payment, Product

pytestmark = pytest.mark.django_db


def _counts() -> dict[str, int]:
    return {
        "orders": Order.objects.count(),
        "lines": OrderLine.objects.count(),
        "payments": Payment.objects.count(),
        "outbox": OutboxMessage.objects.count(),
    }


def _order_body(product, quantity: int = 1) -> dict:
    return {"lines": [{"product_id": product.pk, "quantity": quantity}]}


def test_same_key_and_request_replays_the_first_response_and_runs_once(
    customer_client, make_product
):
    product = make_product(stock=5)
    before = _counts()
    first = customer_client.post(
        "/api/orders", _order_body(product, 2), format="json", HTTP_IDEMPOTENCY_KEY="order-1"
    )
    assert first.status_code == 201, first.content
    assert "Idempotent-Replayed" not in first
    after_first = _counts()
    assert after_first["orders"] == before["orders"] + 1
    # One order row plus one product row (StockReserved).
    assert after_first["outbox"] == before["outbox"] + 2

    second = customer_client.post(
        "/api/orders", _order_body(product, 2), format="json", HTTP_IDEMPOTENCY_KEY="order-1"
    )
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert second["X-Consistency-Token"] == first["X-Consistency-Token"]
    assert second["ETag"] == first["ETag"]
    assert _counts() == after_first
    product.refresh_from_db()
    assert product.stock == 3


def test_replay_of_a_transition_command(customer, customer_client, make_order):
    order = make_order(customer=customer)
    first = customer_client.post(f"/api/orders/{order.pk}/pay", HTTP_IDEMPOTENCY_KEY="pay-1")
    assert first.status_code == 200, first.content
    before = _counts()
    # Without the key a second pay is refused; with it the first answer is replayed.
    second = customer_client.post(f"/api/orders/{order.pk}/pay", HTTP_IDEMPOTENCY_KEY="pay-1")
    assert second.status_code == 200
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert second["X-Consistency-Token"] == first["X-Consistency-Token"]
    assert _counts() == before
    customer.refresh_from_db()
    assert customer.balance_cents == 100_000 - order.total_cents


def test_a_refused_command_is_replayed_too(customer_client, make_product):
    product = make_product(stock=1)
    before = _counts()
    first = customer_client.post(
        "/api/orders", _order_body(product, 5), format="json", HTTP_IDEMPOTENCY_KEY="too-many"
    )
    assert first.status_code == 409
    assert first.json()["error"]["code"] == "insufficient_stock"
    assert _counts() == before
    assert IdempotencyKey.objects.get(key="too-many").status_code == 409

    # Now the order could succeed, but the key's answer is the stored refusal.
    commands.restock_product(product_id=product.pk, quantity=100)
    before = _counts()
    second = customer_client.post(
        "/api/orders", _order_body(product, 5), format="json", HTTP_IDEMPOTENCY_KEY="too-many"
    )
    assert second.status_code == 409
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert _counts() == before


def test_a_refused_validation_is_replayed(customer_client):
    first = customer_client.post(
        "/api/orders", {"lines": []}, format="json", HTTP_IDEMPOTENCY_KEY="bad"
    )
    assert first.status_code == 400
    second = customer_client.post(
        "/api/orders", {"lines": []}, format="json", HTTP_IDEMPOTENCY_KEY="bad"
    )
    assert second.status_code == 400
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()


@pytest.mark.parametrize(
    "change",
    ["body", "path", "if_match"],
)
def test_same_key_with_a_different_request_is_refused_and_writes_nothing(
    change, customer, customer_client, make_product
):
    product = make_product(stock=10)
    other = make_product(stock=10)
    first = customer_client.post(
        "/api/orders", _order_body(product, 1), format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert first.status_code == 201
    stored = IdempotencyKey.objects.get(key="k")
    before = _counts()
    if change == "body":
        again = customer_client.post(
            "/api/orders", _order_body(other, 1), format="json", HTTP_IDEMPOTENCY_KEY="k"
        )
    elif change == "path":
        again = customer_client.post(
            f"/api/customers/{customer.pk}/top-ups",
            {"amount_cents": 100},
            format="json",
            HTTP_IDEMPOTENCY_KEY="k",
        )
    else:
        again = customer_client.post(
            "/api/orders",
            _order_body(product, 1),
            format="json",
            HTTP_IDEMPOTENCY_KEY="k",
            HTTP_IF_MATCH='"1"',
        )
    assert again.status_code == 422
    assert again.json()["error"]["code"] == "idempotency_key_reused"
    assert "Idempotent-Replayed" not in again
    assert _counts() == before
    customer.refresh_from_db()
    assert customer.balance_cents == 100_000
    other.refresh_from_db()
    assert other.stock == 10
    # The stored answer is untouched: the right request still replays it.
    fresh = IdempotencyKey.objects.get(key="k")
    assert (fresh.fingerprint, fresh.status_code, fresh.response_body) == (
        stored.fingerprint,
        stored.status_code,
        stored.response_body,
    )
    replay = customer_client.post(
        "/api/orders", _order_body(product, 1), format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert replay.status_code == 201
    assert replay.json() == first.json()


def test_keys_are_per_user(make_customer, client_for, make_product):
    product = make_product(stock=10)
    ann, bob = make_customer(balance_cents=5000), make_customer(balance_cents=5000)
    before = _counts()
    responses = [
        client_for(c.user).post(
            "/api/orders", _order_body(product), format="json", HTTP_IDEMPOTENCY_KEY="shared"
        )
        for c in (ann, bob)
    ]
    assert [r.status_code for r in responses] == [201, 201]
    assert all("Idempotent-Replayed" not in r for r in responses)
    assert responses[0].data["id"] != responses[1].data["id"]
    assert responses[0].data["customer_id"] == ann.pk
    assert responses[1].data["customer_id"] == bob.pk
    assert _counts()["orders"] == before["orders"] + 2
    assert IdempotencyKey.objects.filter(key="shared").count() == 2


def test_an_expired_key_runs_the_command_again(customer_client, make_product):
    product = make_product(stock=10)
    first = customer_client.post(
        "/api/orders", _order_body(product), format="json", HTTP_IDEMPOTENCY_KEY="old"
    )
    assert first.status_code == 201
    IdempotencyKey.objects.filter(key="old").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    before = _counts()
    second = customer_client.post(
        "/api/orders", _order_body(product), format="json", HTTP_IDEMPOTENCY_KEY="old"
    )
    assert second.status_code == 201
    assert "Idempotent-Replayed" not in second
    assert second.data["id"] != first.data["id"]
    assert _counts()["orders"] == before["orders"] + 1
    record = IdempotencyKey.objects.get(key="old")
    assert record.expires_at > timezone.now()
    assert record.response_body["id"] == second.data["id"]
    # And the renewed key replays the second answer.
    third = customer_client.post(
        "/api/orders", _order_body(product), format="json", HTTP_IDEMPOTENCY_KEY="old"
    )
    assert third["Idempotent-Replayed"] == "true"
    assert third.json() == second.json()


def test_an_expired_key_may_be_reused_with_a_different_request(customer_client, make_product):
    product, other = make_product(stock=10), make_product(stock=10)
    assert customer_client.post(
        "/api/orders", _order_body(product), format="json", HTTP_IDEMPOTENCY_KEY="recycled"
    ).status_code == 201
    IdempotencyKey.objects.filter(key="recycled").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    again = customer_client.post(
        "/api/orders", _order_body(other), format="json", HTTP_IDEMPOTENCY_KEY="recycled"
    )
    assert again.status_code == 201
    assert again.data["lines"][0]["product_id"] == other.pk


def test_purge_expired_deletes_expired_keys_only():
    now = timezone.now()
    for i in range(5):
        IdempotencyKey.objects.create(
            owner="user:1", key=f"expired-{i}", fingerprint="x", expires_at=now - timedelta(hours=1)
        )
    for i in range(3):
        IdempotencyKey.objects.create(
            owner="user:1", key=f"live-{i}", fingerprint="x", expires_at=now + timedelta(hours=1)
        )
    assert idempotency.purge_expired(batch_size=2) == 5
    assert sorted(IdempotencyKey.objects.values_list("key", flat=True)) == [
        "live-0",
        "live-1",
        "live-2",
    ]
    assert idempotency.purge_expired() == 0


@pytest.mark.parametrize("key", ["x" * 256, "", "nul\x00byte"])
def test_an_invalid_key_is_refused_with_400_and_writes_nothing(key, customer_client, make_product):
    product = make_product(stock=10)
    before = _counts()
    response = customer_client.post(
        "/api/orders", _order_body(product), format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert "Idempotency-Key" in response.json()["error"]["fields"]
    assert _counts() == before
    assert not IdempotencyKey.objects.exists()


def test_a_key_of_255_characters_is_fine(customer_client, make_product):
    product = make_product(stock=10)
    response = customer_client.post(
        "/api/orders", _order_body(product), format="json", HTTP_IDEMPOTENCY_KEY="k" * 255
    )
    assert response.status_code == 201


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_with_the_same_key_place_one_order(
    make_customer, make_product, client_for
):
    customer = make_customer(balance_cents=100_000)
    product = make_product(stock=10)
    clients = [client_for(customer.user) for _ in range(2)]
    barrier = threading.Barrier(len(clients))
    responses: list = [None] * len(clients)
    errors: list = []

    def post(index: int) -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=30)
            responses[index] = clients[index].post(
                "/api/orders", _order_body(product, 2), format="json", HTTP_IDEMPOTENCY_KEY="race"
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert [r.status_code for r in responses] == [201, 201], [r.content for r in responses]
    assert responses[0].json() == responses[1].json()
    assert responses[0]["X-Consistency-Token"] == responses[1]["X-Consistency-Token"]
    assert sorted(r.get("Idempotent-Replayed", "") for r in responses) == ["", "true"]
    assert Order.objects.filter(customer=customer).count() == 1
    assert OutboxMessage.objects.filter(event_type="OrderPlaced").count() == 1
    assert Product.objects.get(pk=product.pk).stock == 8
