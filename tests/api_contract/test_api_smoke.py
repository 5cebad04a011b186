"""The happy path over HTTP: register, top up, place, pay, read back strongly."""

import pytest

pytestmark = pytest.mark.django_db


def test_order_lifecycle_over_http(staff_client, client_for, make_product):
    product = make_product(price_cents=250, stock=3)
    created = staff_client.post(
        "/api/customers", {"email": "Ann@Example.com", "name": "Ann"}, format="json"
    )
    assert created.status_code == 201, created.content
    customer_id = created.data["id"]
    assert created.data["email"] == "ann@example.com"
    assert created["X-Consistency-Token"]

    topped = staff_client.post(
        f"/api/customers/{customer_id}/top-ups", {"amount_cents": 1000}, format="json"
    )
    assert topped.status_code == 200
    assert topped.data["balance_cents"] == 1000

    from orders.models import Customer

    customer_client = client_for(Customer.objects.get(pk=customer_id).user)
    placed = customer_client.post(
        "/api/orders", {"lines": [{"product_id": product.pk, "quantity": 2}]}, format="json"
    )
    assert placed.status_code == 201, placed.content
    assert placed.data["total_cents"] == 500
    assert placed.data["lines"][0]["product_name"] == product.name
    order_id = placed.data["id"]

    paid = customer_client.post(f"/api/orders/{order_id}/pay")
    assert paid.status_code == 200, paid.content
    assert paid.data["status"] == "paid"

    read = customer_client.get(f"/api/orders/{order_id}")
    assert read.status_code == 200
    assert read["X-Consistency"] == "strong"
    assert read["ETag"] == f'"{read.data["version"]}"'
    assert [p["kind"] for p in read.data["payments"]] == ["charge"]

    balance = customer_client.get(f"/api/customers/{customer_id}")
    assert balance.data["balance_cents"] == 500

    again = customer_client.post(f"/api/orders/{order_id}/pay")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invalid_transition"


def test_a_placed_order_answers_what_a_read_of_it_shows(client_for, make_customer, make_product):
    """The command's answer is built from what it wrote (no second read of the order):
    it must be the very body a strong read gives, lines in the same order."""
    customer = make_customer(balance_cents=10_000)
    first, second = make_product(price_cents=250, stock=5), make_product(price_cents=99, stock=5)
    client = client_for(customer.user)
    placed = client.post("/api/orders", {"lines": [
        {"product_id": second.pk, "quantity": 1}, {"product_id": first.pk, "quantity": 2},
    ]}, format="json")
    assert placed.status_code == 201, placed.content
    assert len(placed.json()["lines"]) == 2 and placed.json()["payments"] == []
    read = client.get(f"/api/orders/{placed.data['id']}")
    assert placed.json() == read.json()
