"""Who may do what: customers act for themselves only, staff for anyone, anonymous for no one."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from orders.models import Customer, Order, OrderLine, OutboxMessage, Payment, Product

pytestmark = pytest.mark.django_db


def _state() -> dict:
    return {
        "customers": list(Customer.objects.order_by("pk").values()),
        "products": list(Product.objects.order_by("pk").values()),
        "orders": list(Order.objects.order_by("pk").values()),
        "lines": OrderLine.objects.count(),
        "payments": Payment.objects.count(),
        "outbox": OutboxMessage.objects.count(),
    }


def _error_code(response) -> str:
    body = response.json()
    assert isinstance(body["error"]["message"], str)
    return body["error"]["code"]


@pytest.fixture
def ann_client(ann, client_for):
    return client_for(ann.user)


@pytest.fixture
def bobs_order(bob, make_order):
    return make_order(customer=bob)


def test_a_customer_cannot_read_another_customers_order(ann_client, bobs_order):
    response = ann_client.get(f"/api/orders/{bobs_order.pk}")
    assert response.status_code == 404
    assert _error_code(response) == "not_found"


@pytest.mark.parametrize("action", ["pay", "cancel"])
def test_a_customer_cannot_pay_or_cancel_another_customers_order(
    action, ann_client, bobs_order
):
    before = _state()
    response = ann_client.post(f"/api/orders/{bobs_order.pk}/{action}")
    assert response.status_code == 404
    assert _error_code(response) == "not_found"
    assert _state() == before


def test_another_customers_order_is_indistinguishable_from_a_missing_one(
    ann_client, bobs_order
):
    theirs = ann_client.post(f"/api/orders/{bobs_order.pk}/pay")
    missing = ann_client.post("/api/orders/00000000-0000-0000-0000-000000000000/pay")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()


def test_a_customer_cannot_read_or_top_up_another_customer(ann_client, bob):
    before = _state()
    read = ann_client.get(f"/api/customers/{bob.pk}")
    assert read.status_code == 404
    assert _error_code(read) == "not_found"
    top_up = ann_client.post(
        f"/api/customers/{bob.pk}/top-ups", {"amount_cents": 100}, format="json"
    )
    # Refused before anything about bob is looked at: the same answer as for oneself.
    assert top_up.status_code == 403
    assert _error_code(top_up) == "permission_required"
    assert _state() == before


def test_a_customer_can_read_but_not_top_up_themselves(ann, ann_client):
    assert ann_client.get(f"/api/customers/{ann.pk}").status_code == 200
    before = _state()
    response = ann_client.post(
        f"/api/customers/{ann.pk}/top-ups", {"amount_cents": 100}, format="json"
    )
    assert response.status_code == 403
    assert _error_code(response) == "permission_required"
    assert _state() == before


def test_a_customer_cannot_place_an_order_for_another_customer(ann_client, bob, make_product):
    product = make_product(stock=5)
    before = _state()
    response = ann_client.post(
        "/api/orders",
        {"customer_id": bob.pk, "lines": [{"product_id": product.pk, "quantity": 1}]},
        format="json",
    )
    assert response.status_code == 404
    assert _error_code(response) == "not_found"
    assert _state() == before


def test_a_customer_may_name_themselves_as_customer_id(ann, ann_client, make_product):
    product = make_product(stock=5)
    response = ann_client.post(
        "/api/orders",
        {"customer_id": ann.pk, "lines": [{"product_id": product.pk, "quantity": 1}]},
        format="json",
    )
    assert response.status_code == 201
    assert response.data["customer_id"] == ann.pk


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("post", "/api/products", {"sku": "X-1", "name": "X", "category": "c", "price_cents": 1}),
        ("patch", "/api/products/{product}", {"name": "Renamed"}),
        ("post", "/api/products/{product}/restock", {"quantity": 5}),
        ("post", "/api/orders/{own_order}/ship", None),
    ],
)
def test_a_customer_cannot_run_staff_commands(
    method, path, body, ann, ann_client, make_product, make_order
):
    from orders import commands

    product = make_product()
    own_order = make_order(customer=ann)
    commands.pay_order(order_id=own_order.pk)
    before = _state()
    url = path.format(product=product.pk, own_order=own_order.pk)
    response = getattr(ann_client, method)(url, body, format="json")
    assert response.status_code == 403, response.content
    assert _error_code(response) == "staff_only"
    assert _state() == before


def test_a_customer_can_pay_and_cancel_their_own_order(ann, ann_client, make_order):
    order = make_order(customer=ann)
    assert ann_client.post(f"/api/orders/{order.pk}/pay").status_code == 200
    assert ann_client.post(f"/api/orders/{order.pk}/cancel").status_code == 200


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("post", "/api/customers", {"email": "anon@example.com", "name": "Anon"}),
        ("get", "/api/customers/{customer}", None),
        ("post", "/api/customers/{customer}/top-ups", {"amount_cents": 100}),
        ("post", "/api/products", {"sku": "X-1", "name": "X", "category": "c", "price_cents": 1}),
        ("patch", "/api/products/{product}", {"name": "Renamed"}),
        ("post", "/api/products/{product}/restock", {"quantity": 5}),
        ("post", "/api/orders", {"lines": [{"product_id": "{product}", "quantity": 1}]}),
        ("get", "/api/orders/{order}", None),
        ("post", "/api/orders/{order}/pay", None),
        ("post", "/api/orders/{order}/cancel", None),
        ("post", "/api/orders/{order}/ship", None),
    ],
)
def test_anonymous_is_refused(method, path, body, anon_client, ann, make_product, make_order):
    product = make_product()
    order = make_order(customer=ann)
    if body and "lines" in body:
        body = {"lines": [{"product_id": product.pk, "quantity": 1}]}
    before = _state()
    url = path.format(customer=ann.pk, product=product.pk, order=order.pk)
    response = getattr(anon_client, method)(url, body, format="json")
    assert response.status_code in (401, 403), response.content
    assert _error_code(response) == "not_authenticated"
    assert _state() == before


def test_staff_can_act_for_any_customer(staff_client, ann, bob, make_product):
    product = make_product(stock=10, price_cents=100)
    assert staff_client.get(f"/api/customers/{bob.pk}").status_code == 200
    topped = staff_client.post(
        f"/api/customers/{bob.pk}/top-ups", {"amount_cents": 50}, format="json"
    )
    assert topped.status_code == 200
    assert topped.data["balance_cents"] == 100_050

    placed = staff_client.post(
        "/api/orders",
        {"customer_id": bob.pk, "lines": [{"product_id": product.pk, "quantity": 2}]},
        format="json",
    )
    assert placed.status_code == 201, placed.content
    assert placed.data["customer_id"] == bob.pk
    order_id = placed.data["id"]
    assert staff_client.get(f"/api/orders/{order_id}").status_code == 200
    assert staff_client.post(f"/api/orders/{order_id}/pay").status_code == 200
    assert staff_client.post(f"/api/orders/{order_id}/ship").status_code == 200

    second = staff_client.post(
        "/api/orders",
        {"customer_id": ann.pk, "lines": [{"product_id": product.pk, "quantity": 1}]},
        format="json",
    )
    assert second.status_code == 201
    assert staff_client.post(f"/api/orders/{second.data['id']}/cancel").status_code == 200


def test_staff_must_name_the_customer(staff_client, make_product):
    product = make_product()
    before = _state()
    response = staff_client.post(
        "/api/orders", {"lines": [{"product_id": product.pk, "quantity": 1}]}, format="json"
    )
    assert response.status_code == 400
    assert _error_code(response) == "customer_required"
    assert _state() == before


def test_a_login_that_is_not_a_customer_may_register_itself_once(client_for):
    user = get_user_model().objects.create_user(username="newbie", password="pw")
    client = client_for(user)
    first = client.post(
        "/api/customers", {"email": "Newbie@Example.com", "name": "Newbie"}, format="json"
    )
    assert first.status_code == 201, first.content
    customer = Customer.objects.get(pk=first.data["id"])
    assert customer.user == user
    assert customer.email == "newbie@example.com"
    assert OutboxMessage.objects.filter(
        aggregate_type="customer", aggregate_id=str(customer.pk), event_type="CustomerRegistered"
    ).count() == 1

    before = _state()
    second = client.post(
        "/api/customers", {"email": "other@example.com", "name": "Again"}, format="json"
    )
    assert second.status_code == 409
    assert _error_code(second) == "already_exists"
    assert _state() == before
    # And now it acts as that customer.
    assert client.get(f"/api/customers/{customer.pk}").status_code == 200


def test_a_login_that_is_not_a_customer_cannot_act(client_for, ann, make_product):
    user = get_user_model().objects.create_user(username="lurker", password="pw")
    client = client_for(user)
    product = make_product()
    before = _state()
    response = client.post(
        "/api/orders",
        {"customer_id": ann.pk, "lines": [{"product_id": product.pk, "quantity": 1}]},
        format="json",
    )
    assert response.status_code == 403
    assert _error_code(response) == "not_a_customer"
    read = client.get(f"/api/customers/{ann.pk}")
    assert read.status_code == 403
    assert _state() == before


def test_a_customer_cannot_register_with_someone_elses_email(client_for, ann):
    user = get_user_model().objects.create_user(username="copycat", password="pw")
    before = _state()
    response = client_for(user).post(
        "/api/customers", {"email": ann.email.upper(), "name": "Copy"}, format="json"
    )
    assert response.status_code == 409
    assert _state() == before


def test_product_read_is_public(anon_client, make_product):
    product = make_product()
    response = anon_client.get(f"/api/products/{product.pk}")
    assert response.status_code == 200
    assert response.data["sku"] == product.sku


def test_session_auth_enforces_csrf(ann, make_product):
    ann.user.set_password("pw")
    ann.user.save()
    product = make_product(stock=5)
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username=ann.user.username, password="pw")
    # Reads need no token.
    assert client.get(f"/api/customers/{ann.pk}").status_code == 200
    before = _state()
    body = {"lines": [{"product_id": product.pk, "quantity": 1}]}
    response = client.post("/api/orders", body, format="json")
    assert response.status_code == 403, response.content
    assert _error_code(response) == "permission_denied"
    assert "CSRF" in response.json()["error"]["message"]
    assert _state() == before

    # With the CSRF cookie's token in the header, the same request goes through.
    client.get("/admin/login/")
    token = client.cookies["csrftoken"].value
    accepted = client.post("/api/orders", body, format="json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201, accepted.content
