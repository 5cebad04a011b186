"""Token reads are bounded: with the projector stopped, the answer comes at the deadline,
200 and stale, not later; bad parameters are 400s."""

import time

import pytest

from orders import commands
from orders.models import Customer
from tests.support.readside import project_all

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def paid_but_not_projected(read_models, make_customer, make_product, client_for):
    customer = make_customer(balance_cents=10_000)
    order = commands.place_order(
        customer_id=customer.pk, lines=[commands.LineRequest(make_product().pk, 1)]).value
    project_all()
    paid = commands.pay_order(order_id=order.pk)  # no projector runs after this
    client = client_for(Customer.objects.get(pk=customer.pk).user)
    return customer, order, paid, client


@pytest.mark.parametrize("view", ["summary", "dashboard"])
def test_a_token_read_answers_stale_at_its_deadline(paid_but_not_projected, view):
    customer, order, paid, client = paid_but_not_projected
    path = (f"/api/orders/{order.pk}/summary" if view == "summary"
            else f"/api/customers/{customer.pk}/dashboard")
    started = time.monotonic()
    response = client.get(f"{path}?max_wait_ms=300", HTTP_X_CONSISTENCY_TOKEN=paid.token)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response["X-Consistency"] == "eventual"
    assert response["X-Stale"] == "true"
    assert elapsed >= 0.3
    assert elapsed < 1.5, "the read waited past its deadline"
    if view == "summary":
        assert response.data["status"] == "pending"  # the old state, honestly labelled
    else:
        assert response.data["balance_cents"] == 10_000


def test_without_a_token_the_read_answers_at_once_with_its_lag(paid_but_not_projected):
    customer, order, paid, client = paid_but_not_projected
    started = time.monotonic()
    response = client.get(f"/api/orders/{order.pk}/summary")
    assert time.monotonic() - started < 0.3
    assert response["X-Stale"] == "false"
    assert "X-Read-Model-Lag-Ms" in response


def test_a_reached_token_answers_at_once_even_with_a_huge_max_wait(paid_but_not_projected):
    customer, order, paid, client = paid_but_not_projected
    project_all()
    started = time.monotonic()
    response = client.get(f"/api/orders/{order.pk}/summary?max_wait_ms=999999",
                          HTTP_X_CONSISTENCY_TOKEN=paid.token)
    assert time.monotonic() - started < 1.0
    assert response["X-Stale"] == "false"
    assert response.data["status"] == "paid"


@pytest.mark.parametrize("query,code", [
    ("max_wait_ms=-1", "invalid_max_wait"),
    ("max_wait_ms=abc", "invalid_max_wait"),
])
def test_bad_max_wait_is_a_400(paid_but_not_projected, query, code):
    customer, order, paid, client = paid_but_not_projected
    response = client.get(f"/api/orders/{order.pk}/summary?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_a_garbage_token_is_a_400(paid_but_not_projected):
    customer, order, paid, client = paid_but_not_projected
    response = client.get(f"/api/orders/{order.pk}/summary", HTTP_X_CONSISTENCY_TOKEN="nonsense")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_consistency_token"
