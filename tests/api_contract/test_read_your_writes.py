"""End to end per read model: a command over HTTP, then the projected view shows it.

With the consistency token the very next read shows the write; without it the read
may be stale, and the headers say how stale.
"""

import pytest

from orders.models import Customer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shopper(make_customer, client_for):
    customer = make_customer(balance_cents=50_000, name="Rita Reader")
    return customer, client_for(Customer.objects.get(pk=customer.pk).user)


def _place(client, product, quantity=1):
    response = client.post(
        "/api/orders", {"lines": [{"product_id": product.pk, "quantity": quantity}]}, format="json"
    )
    assert response.status_code == 201, response.content
    return response


def test_order_summary_with_token_shows_own_write(celery_worker_thread, shopper, make_product):
    customer, client = shopper
    product = make_product(name="Red Kettle", price_cents=1500)
    placed = _place(client, product, 2)
    token = placed["X-Consistency-Token"]

    read = client.get(
        f"/api/orders/{placed.data['id']}/summary?max_wait_ms=5000", HTTP_X_CONSISTENCY_TOKEN=token
    )
    assert read.status_code == 200, read.content
    assert read["X-Consistency"] == "eventual"
    assert read["X-Read-Model"] == "order_summary"
    assert read["X-Stale"] == "false"
    assert int(read["X-Consistency-Wait-Ms"]) >= 0
    assert read.data["status"] == "pending"
    assert read.data["total_cents"] == 3000
    assert read.data["lines"][0]["name"] == "Red Kettle"

    paid = client.post(f"/api/orders/{placed.data['id']}/pay")
    after = client.get(
        f"/api/orders/{placed.data['id']}/summary?max_wait_ms=5000",
        HTTP_X_CONSISTENCY_TOKEN=paid["X-Consistency-Token"],
    )
    assert after.data["status"] == "paid"
    assert after.data["version"] == paid.data["version"]


def test_dashboard_with_token_shows_balance_after_payment(
    celery_worker_thread, shopper, make_product
):
    customer, client = shopper
    placed = _place(client, make_product(price_cents=2000))
    paid = client.post(f"/api/orders/{placed.data['id']}/pay")
    read = client.get(
        f"/api/customers/{customer.pk}/dashboard?max_wait_ms=5000",
        HTTP_X_CONSISTENCY_TOKEN=paid["X-Consistency-Token"],
    )
    assert read.status_code == 200, read.content
    assert read["X-Stale"] == "false"
    assert read.data["balance_cents"] == 48_000
    assert read.data["lifetime_spend_cents"] == 2000
    assert read.data["order_count"] == 1
    assert read.data["open_orders"] == 1
    assert read.data["recent_orders"][0]["id"] == placed.data["id"]


def test_order_history_and_staff_search_with_token(
    celery_worker_thread, shopper, make_product, staff_client
):
    customer, client = shopper
    first = _place(client, make_product(name="Blue Teapot", sku="TEA-1"))
    second = _place(client, make_product(name="Green Mug", sku="MUG-1"))
    token = second["X-Consistency-Token"]

    history = client.get(
        f"/api/customers/{customer.pk}/orders?max_wait_ms=5000", HTTP_X_CONSISTENCY_TOKEN=token
    )
    assert history.status_code == 200, history.content
    assert history["X-Read-Model"] == "orders_search"
    assert history["X-Stale"] == "false"
    assert [o["id"] for o in history.data["results"]] == [second.data["id"], first.data["id"]]

    found = staff_client.get("/api/orders/search?q=teapot", HTTP_X_CONSISTENCY_TOKEN=token)
    assert found.status_code == 200, found.content
    assert [o["id"] for o in found.data["results"]] == [first.data["id"]]
    by_email = staff_client.get(f"/api/orders/search?q={customer.email}")
    assert by_email.data["count"] == 2
    by_sku = staff_client.get("/api/orders/search?q=MUG-1")
    assert [o["id"] for o in by_sku.data["results"]] == [second.data["id"]]


def test_product_search_with_token_finds_new_product(celery_worker_thread, staff_client):
    created = staff_client.post(
        "/api/products",
        {
            "sku": "LAMP-7",
            "name": "Brass Desk Lamp",
            "description": "Warm light for late readers",
            "category": "office",
            "price_cents": 4500,
            "stock": 3,
        },
        format="json",
    )
    assert created.status_code == 201
    token = created["X-Consistency-Token"]
    found = staff_client.get(
        "/api/products/search?q=lmap&max_wait_ms=5000", HTTP_X_CONSISTENCY_TOKEN=token
    )
    assert found.status_code == 200, found.content
    assert found["X-Stale"] == "false"
    assert [p["sku"] for p in found.data["results"]] == ["LAMP-7"]
    assert {"value": "office", "count": 1} in found.data["facets"]["category"]


def test_a_read_without_token_says_how_far_behind_the_view_is(read_models, shopper, make_product):
    """The window made visible: no projector has run, and the lag header grows."""
    from tests.support.readside import project_all
    from tests.support.waiting import wait_until

    customer, client = shopper
    project_all()
    placed = _place(client, make_product())

    def read():
        # Opted out of session consistency: the answer comes at once, window and all.
        return client.get(f"/api/customers/{customer.pk}/dashboard?consistency=none")

    first = read()
    assert first.status_code == 200
    assert first["X-Consistency"] == "eventual"
    assert first["X-Consistency-Source"] == "none"
    assert first["X-Stale"] == "true"  # it does not show the customer's own order yet
    assert first.data["order_count"] == 0  # the window: the order is not there yet
    wait_until(lambda: int(read()["X-Read-Model-Lag-Ms"]) > 0, message="lag header stays 0")

    project_all()
    caught_up = client.get(
        f"/api/customers/{customer.pk}/dashboard", HTTP_X_CONSISTENCY_TOKEN=placed["X-Consistency-Token"]
    )
    assert caught_up["X-Read-Model-Lag-Ms"] == "0"
    assert caught_up.data["order_count"] == 1
