"""The API explains itself: a root, /api/me, one name for keys, Location, page links,
an opaque history cursor."""

from __future__ import annotations

import base64
import json

import pytest

from orders.models import Customer
from tests.support.readside import project_all

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_root_lists_the_resources(anon_client):
    response = anon_client.get("/api/")
    assert response.status_code == 200, response.content
    paths = {r["path"]: r for r in response.json()["resources"]}
    assert paths["/api/products/search"]["access"] == "public"
    assert paths["/api/customers/{customer_id}/dashboard"]["consistency"] == "eventual"
    assert response.json()["schema"].endswith("/api/schema/")


def test_me_names_the_user_and_their_customer(make_customer, client_for, staff_client, anon_client):
    customer = make_customer()
    user = Customer.objects.get(pk=customer.pk).user
    me = client_for(user).get("/api/me")
    assert me.status_code == 200
    assert me["X-Consistency"] == "strong"
    assert me.json() == {
        "id": user.pk, "username": user.username, "is_staff": False, "customer_id": customer.pk,
    }
    staff = staff_client.get("/api/me").json()
    assert staff["is_staff"] is True and staff["customer_id"] is None
    assert anon_client.get("/api/me").status_code == 401


def test_creations_answer_with_location(make_customer, make_product, client_for, staff_client):
    product = staff_client.post(
        "/api/products", {"sku": "LOC-1", "name": "Lamp", "category": "home", "price_cents": 100, "stock": 3},
        format="json")
    assert product.status_code == 201, product.content
    assert product["Location"].endswith(f"/api/products/{product.json()['id']}")
    customer = make_customer(balance_cents=1000)
    client = client_for(Customer.objects.get(pk=customer.pk).user)
    order = client.post(
        "/api/orders", {"lines": [{"product_id": product.json()["id"], "quantity": 1}]},
        format="json", HTTP_IDEMPOTENCY_KEY="loc-order")
    assert order.status_code == 201
    assert order["Location"].endswith(f"/api/orders/{order.json()['id']}")
    assert client.get(order["Location"]).status_code == 200
    replay = client.post(
        "/api/orders", {"lines": [{"product_id": product.json()["id"], "quantity": 1}]},
        format="json", HTTP_IDEMPOTENCY_KEY="loc-order")
    assert replay["Location"] == order["Location"]


def test_search_hits_call_the_key_id_and_pages_link(read_models, make_product, anon_client):
    products = [make_product(name=f"Paging Lamp {n}") for n in range(3)]
    project_all()
    first = anon_client.get("/api/products/search?q=lamp&sort=newest&page_size=2").json()
    assert [hit["id"] for hit in first["results"]] == [p.pk for p in products[::-1][:2]]
    assert "product_id" not in first["results"][0]
    assert first["previous"] is None and "page=2" in first["next"]
    second = anon_client.get(first["next"]).json()
    assert [hit["id"] for hit in second["results"]] == [products[0].pk]
    assert second["next"] is None and "page=1" in second["previous"]


def test_history_pages_by_an_opaque_cursor(read_models, make_customer, make_order, client_for):
    customer = make_customer(balance_cents=100_000)
    orders = [make_order(customer=customer) for _ in range(3)]
    project_all()
    client = client_for(Customer.objects.get(pk=customer.pk).user)
    base = f"/api/customers/{customer.pk}/orders?page_size=2&consistency=none"
    first = client.get(base).json()
    assert first["previous"] is None
    cursor = first["next_search_after"]
    json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))  # base64 of the sort values
    second = client.get(first["next"]).json()
    seen = [o["id"] for o in first["results"] + second["results"]]
    assert sorted(seen) == sorted(str(o.pk) for o in orders)
    assert second["next"] is None and second["previous"] is not None
    for bad in ['[1, "x"]', "not-a-cursor", base64.urlsafe_b64encode(b'{"a": 1}').decode()]:
        response = client.get(f"{base}&search_after={bad}")
        assert response.status_code == 400, (bad, response.content)
        assert response.json()["error"]["fields"]["search_after"][0]["code"] == "invalid_cursor"
