"""Fixtures of the access tests: two customers, Ann and Bob, with money."""

import pytest


@pytest.fixture
def ann(make_customer):
    return make_customer(balance_cents=100_000)


@pytest.fixture
def bob(make_customer):
    return make_customer(balance_cents=100_000)
