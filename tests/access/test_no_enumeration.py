"""What a caller may not see does not leak through a command's refusal.

A customer cannot learn whether an email belongs to another customer, and a product
taken off sale is, to everyone but staff, a product that does not exist: ordering it
answers exactly as ordering a missing one.
"""

from __future__ import annotations

import pytest

from orders.models import Customer, Order
from tests.support.http import auth, call

pytestmark = pytest.mark.django_db(transaction=True)


def test_registering_answers_a_customer_the_same_whoever_owns_the_email(server, make_customer):
    other = make_customer(email="taken@example.com")
    customer = make_customer(email="me@example.com")
    answers = [
        call(server, "POST", "/api/customers", {"email": email, "name": "Probe"},
             headers=auth(customer.user))
        for email in (other.email, "never-seen@example.com", "TAKEN@example.com ")
    ]
    assert [a.status for a in answers] == [409, 409, 409], answers
    assert answers[0].json() == answers[1].json() == answers[2].json(), answers
    assert not Customer.objects.filter(email="never-seen@example.com").exists()


def test_ordering_an_inactive_product_answers_as_a_missing_one(server, make_product, make_customer,
                                                               staff_user):
    customer = make_customer(balance_cents=10_000)
    hidden = make_product(sku="OFF-2", active=False, stock=5, price_cents=100)
    shown = make_product(sku="ON-2", stock=5, price_cents=100)
    missing_id = hidden.pk + shown.pk + 1000

    def order(product_id, headers, **extra):
        return call(server, "POST", "/api/orders",
                    {"lines": [{"product_id": product_id, "quantity": 1}], **extra},
                    headers=headers)

    for_missing = order(missing_id, auth(customer.user))
    for_hidden = order(hidden.pk, auth(customer.user))
    assert for_missing.status == for_hidden.status == 404, (for_missing, for_hidden)
    assert for_hidden.code == for_missing.code == "not_found"
    # The message names the id asked for, as for a missing product: nothing else differs.
    assert for_hidden.json()["error"]["message"] == for_missing.json()["error"]["message"].replace(
        str(missing_id), str(hidden.pk)
    )
    # Staff see inactive products, so they are told why.
    for_staff = order(hidden.pk, auth(staff_user), customer_id=customer.pk)
    assert for_staff.status == 409, for_staff
    assert for_staff.code == "product_unavailable"
    assert not Order.objects.exists()
