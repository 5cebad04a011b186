"""ETags on strong reads and If-Match on commands: optimistic concurrency over HTTP."""

from __future__ import annotations

import pytest

from orders import commands
from orders.models import Customer, Order, OutboxMessage, Payment, Product

pytestmark = pytest.mark.django_db


def _snapshot(model, pk) -> dict:
    return model.objects.filter(pk=pk).values().get()


def _assert_precondition_failed(response) -> None:
    assert response.status_code == 412, response.content
    assert response.json()["error"]["code"] == "version_mismatch"
    assert isinstance(response.json()["error"]["message"], str)


def test_strong_reads_carry_the_version_as_etag(
    staff_client, customer, customer_client, make_product, make_order
):
    product = make_product()
    commands.restock_product(product_id=product.pk, quantity=3)
    order = make_order(customer=customer)
    commands.pay_order(order_id=order.pk)
    for client, path, model, pk in [
        (staff_client, f"/api/customers/{customer.pk}", Customer, customer.pk),
        (customer_client, f"/api/customers/{customer.pk}", Customer, customer.pk),
        (staff_client, f"/api/products/{product.pk}", Product, product.pk),
        (customer_client, f"/api/orders/{order.pk}", Order, order.pk),
        (staff_client, f"/api/orders/{order.pk}", Order, order.pk),
    ]:
        response = client.get(path)
        assert response.status_code == 200, (path, response.content)
        version = model.objects.get(pk=pk).version
        assert version > 1
        assert response.data["version"] == version
        assert response["ETag"] == f'"{version}"'
        assert response["X-Consistency"] == "strong"


def test_public_product_read_has_etag_too(anon_client, make_product):
    product = make_product()
    response = anon_client.get(f"/api/products/{product.pk}")
    assert response.status_code == 200
    assert response["ETag"] == '"1"'
    assert response["X-Consistency"] == "strong"


def test_errors_carry_no_etag(staff_client):
    response = staff_client.get("/api/products/999999999")
    assert response.status_code == 404
    assert "ETag" not in response
    assert "X-Consistency" not in response


def test_patch_product_with_if_match(staff_client, make_product):
    product = make_product(name="Kettle", price_cents=1000)
    etag = staff_client.get(f"/api/products/{product.pk}")["ETag"]
    ok = staff_client.patch(
        f"/api/products/{product.pk}", {"price_cents": 1200}, format="json", HTTP_IF_MATCH=etag
    )
    assert ok.status_code == 200, ok.content
    assert ok.data["version"] == 2
    assert ok["ETag"] == '"2"'

    before = _snapshot(Product, product.pk)
    outbox = OutboxMessage.objects.count()
    stale = staff_client.patch(
        f"/api/products/{product.pk}", {"name": "Teapot"}, format="json", HTTP_IF_MATCH=etag
    )
    _assert_precondition_failed(stale)
    assert _snapshot(Product, product.pk) == before
    assert OutboxMessage.objects.count() == outbox


def test_restock_with_if_match(staff_client, make_product):
    product = make_product(stock=1)
    ok = staff_client.post(
        f"/api/products/{product.pk}/restock", {"quantity": 4}, format="json", HTTP_IF_MATCH='"1"'
    )
    assert ok.status_code == 200, ok.content
    assert ok.data["stock"] == 5
    before = _snapshot(Product, product.pk)
    outbox = OutboxMessage.objects.count()
    stale = staff_client.post(
        f"/api/products/{product.pk}/restock", {"quantity": 4}, format="json", HTTP_IF_MATCH='"1"'
    )
    _assert_precondition_failed(stale)
    assert _snapshot(Product, product.pk) == before
    assert OutboxMessage.objects.count() == outbox


def test_top_up_with_if_match(customer, staff_client):
    etag = staff_client.get(f"/api/customers/{customer.pk}")["ETag"]
    ok = staff_client.post(
        f"/api/customers/{customer.pk}/top-ups",
        {"amount_cents": 500},
        format="json",
        HTTP_IF_MATCH=etag,
    )
    assert ok.status_code == 200, ok.content
    assert ok.data["balance_cents"] == 100_500
    assert ok["ETag"] == f'"{ok.data["version"]}"'
    before = _snapshot(Customer, customer.pk)
    outbox = OutboxMessage.objects.count()
    stale = staff_client.post(
        f"/api/customers/{customer.pk}/top-ups",
        {"amount_cents": 500},
        format="json",
        HTTP_IF_MATCH=etag,
    )
    _assert_precondition_failed(stale)
    assert _snapshot(Customer, customer.pk) == before
    assert OutboxMessage.objects.count() == outbox


def test_pay_with_if_match(customer, customer_client, make_order):
    order = make_order(customer=customer)
    stale_etag = f'"{order.version + 1}"'
    before_order, before_customer = _snapshot(Order, order.pk), _snapshot(Customer, customer.pk)
    outbox = OutboxMessage.objects.count()
    stale = customer_client.post(f"/api/orders/{order.pk}/pay", HTTP_IF_MATCH=stale_etag)
    _assert_precondition_failed(stale)
    assert _snapshot(Order, order.pk) == before_order
    assert _snapshot(Customer, customer.pk) == before_customer
    assert not Payment.objects.filter(order=order).exists()
    assert OutboxMessage.objects.count() == outbox

    etag = customer_client.get(f"/api/orders/{order.pk}")["ETag"]
    ok = customer_client.post(f"/api/orders/{order.pk}/pay", HTTP_IF_MATCH=etag)
    assert ok.status_code == 200, ok.content
    assert ok.data["status"] == "paid"
    assert ok["ETag"] == f'"{order.version + 1}"'


def test_cancel_with_if_match(customer, customer_client, make_order):
    order = make_order(customer=customer)
    commands.pay_order(order_id=order.pk)
    before_order, before_customer = _snapshot(Order, order.pk), _snapshot(Customer, customer.pk)
    outbox = OutboxMessage.objects.count()
    stale = customer_client.post(f"/api/orders/{order.pk}/cancel", HTTP_IF_MATCH='"1"')
    _assert_precondition_failed(stale)
    assert _snapshot(Order, order.pk) == before_order
    assert _snapshot(Customer, customer.pk) == before_customer
    assert Payment.objects.filter(order=order).count() == 1
    assert OutboxMessage.objects.count() == outbox
    order.refresh_from_db()

    ok = customer_client.post(
        f"/api/orders/{order.pk}/cancel", HTTP_IF_MATCH=f'"{order.version}"'
    )
    assert ok.status_code == 200, ok.content
    assert ok.data["status"] == "cancelled"


def test_ship_with_if_match(staff_client, make_order):
    order = make_order()
    commands.pay_order(order_id=order.pk)
    order.refresh_from_db()
    before = _snapshot(Order, order.pk)
    outbox = OutboxMessage.objects.count()
    stale = staff_client.post(
        f"/api/orders/{order.pk}/ship", HTTP_IF_MATCH=f'"{order.version - 1}"'
    )
    _assert_precondition_failed(stale)
    assert _snapshot(Order, order.pk) == before
    assert OutboxMessage.objects.count() == outbox

    ok = staff_client.post(f"/api/orders/{order.pk}/ship", HTTP_IF_MATCH=f'"{order.version}"')
    assert ok.status_code == 200, ok.content
    assert ok.data["status"] == "shipped"


@pytest.mark.parametrize("value", ['W/"1"', '"v1"', ' "1" ', "*"])
def test_accepted_if_match_forms(value, staff_client, make_product):
    product = make_product(stock=1)
    response = staff_client.post(
        f"/api/products/{product.pk}/restock", {"quantity": 1}, format="json", HTTP_IF_MATCH=value
    )
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "value", ["1", "abc", '"x"', '"1', '""', '"12345678901"', '"1", "2"', "W/1", "\x00", '"-1"']
)
def test_a_malformed_if_match_is_412_and_changes_nothing(value, staff_client, make_product):
    product = make_product(stock=1)
    before = _snapshot(Product, product.pk)
    outbox = OutboxMessage.objects.count()
    response = staff_client.post(
        f"/api/products/{product.pk}/restock", {"quantity": 1}, format="json", HTTP_IF_MATCH=value
    )
    assert response.status_code == 412, response.content
    assert response.json()["error"]["code"] == "version_mismatch"
    assert _snapshot(Product, product.pk) == before
    assert OutboxMessage.objects.count() == outbox


def test_malformed_if_match_on_an_order_command(customer, customer_client, make_order):
    order = make_order(customer=customer)
    response = customer_client.post(f"/api/orders/{order.pk}/pay", HTTP_IF_MATCH="garbage")
    assert response.status_code == 412
    order.refresh_from_db()
    assert order.status == "pending"
