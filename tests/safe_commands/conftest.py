"""Fixtures of the safe-commands tests: a customer with money, and their API client."""

import pytest


@pytest.fixture
def customer(make_customer):
    return make_customer(balance_cents=100_000)


@pytest.fixture
def customer_client(customer, client_for):
    return client_for(customer.user)
