"""Fixtures of the operations tests."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client


@pytest.fixture
def shipped_order(make_customer, make_product):
    """A shipped order of two Blue Teapots at $18.81: $37.62, charged once."""
    from orders import commands
    from orders.models import Order

    customer = make_customer(balance_cents=100_000)
    teapot = make_product(name="Blue Teapot", price_cents=1_881)
    order = commands.place_order(
        customer_id=customer.pk, lines=[commands.LineRequest(product_id=teapot.pk, quantity=2)]
    ).value
    commands.pay_order(order_id=order.pk)
    commands.ship_order(order_id=order.pk)
    return Order.objects.get(pk=order.pk)


@pytest.fixture
def admin_client_():
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client
