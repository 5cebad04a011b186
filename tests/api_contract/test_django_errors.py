"""Django's own refusals (a body too large, a Host it does not serve) are JSON with a stable code."""

from __future__ import annotations

import pytest

from tests.support.http import auth, call, too_large_body

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_body_over_the_upload_limit_is_a_json_413(server, make_customer, settings):
    customer = make_customer()
    answer = call(server, "POST", "/api/orders", too_large_body(settings),
                  {**auth(customer.user), "Content-Type": "application/json"})
    assert answer.status == 413, answer
    assert answer.code == "request_too_large"


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/health"), ("GET", "/api/products/search"), ("POST", "/api/orders"),
    ("GET", "/admin/"),
])
def test_a_disallowed_host_is_a_json_400(server, method, path):
    answer = call(server, method, path, headers={"Host": "shop.evil.example"})
    assert answer.status == 400, answer
    assert answer.code == "bad_host"
