"""A product taken off sale is not public: to everyone but staff it does not exist."""

from __future__ import annotations

import pytest

from tests.support.http import auth, call
from tests.support.readside import project_all

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_inactive_product_is_visible_to_staff_only(
    server, read_models, make_product, make_customer, bare_staff
):
    hidden = make_product(sku="OFF-1", name="Withdrawn", active=False, stock=7)
    shown = make_product(sku="ON-1", name="Offered", stock=3)
    customer = make_customer()
    missing = call(server, "GET", "/api/products/999999999")
    for headers in ({}, auth(customer.user)):
        answer = call(server, "GET", f"/api/products/{hidden.pk}", headers=headers)
        assert answer.status == 404, answer
        assert answer.json() == missing.json()  # indistinguishable from a missing product
        assert call(server, "GET", f"/api/products/{shown.pk}", headers=headers).status == 200
    for_staff = call(server, "GET", f"/api/products/{hidden.pk}", headers=auth(bare_staff))
    assert for_staff.status == 200, for_staff
    assert for_staff.json()["stock"] == 7

    # The public search index serves active products only, to everyone.
    project_all()
    for headers in ({}, auth(customer.user), auth(bare_staff)):
        found = call(server, "GET", "/api/products/search?q=Withdrawn", headers=headers)
        assert found.status == 200
        assert "OFF-1" not in [r["sku"] for r in found.json()["results"]]
        assert call(server, "GET", "/api/products/search?q=ON-1").json()["results"]
