"""A projected read whose view is down or past its lag SLO says so over HTTP: a critical
one answers from PostgreSQL (`X-Consistency: strong-fallback`), the others 503 with
Retry-After. Down means a store at a closed port; past SLO means a commit the projector
has not run for, older than a small SLO."""

from __future__ import annotations

import time

import pytest

from orders import commands
from readmodels.pipeline import progress
from tests.support.ports import free_port
from tests.support.readside import project_all
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _with_slos(settings, seconds: float) -> None:
    conf = settings.READMODELS
    settings.READMODELS = {**conf, "SLO_SECONDS": dict.fromkeys(conf["SLO_SECONDS"], seconds)}


@pytest.fixture
def shop(read_models, make_customer, make_product):
    customer = make_customer(balance_cents=100_000)
    product = make_product(name="Brass Lamp", price_cents=4200)
    order = commands.place_order(
        customer_id=customer.pk, lines=[commands.LineRequest(product.pk, 1)]
    ).value
    project_all()
    return customer, product, order


def _assert_fallback(response, read_model: str) -> None:
    assert response.status_code == 200, response.content
    assert response["X-Consistency"] == "strong-fallback"
    assert response["X-Read-Model"] == read_model
    assert response["X-Stale"] == "false"


def _assert_unavailable(response, read_model: str) -> None:
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "read_model_unavailable"
    assert int(response["Retry-After"]) >= 1
    assert response["X-Read-Model"] == read_model


def test_with_redis_down_summary_and_dashboard_answer_from_postgresql(
    shop, settings, client_for
):
    customer, _product, order = shop
    # Generous SLOs: only the outage may cause the fallback here.
    _with_slos(settings, 3600)
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    client = client_for(customer.user)

    summary = client.get(f"/api/orders/{order.pk}/summary")
    _assert_fallback(summary, "order_summary")
    # No lag is known when the view's store does not answer.
    assert "X-Read-Model-Lag-Ms" not in summary
    assert summary.json()["id"] == str(order.pk)
    assert summary.json()["total_cents"] == 4200

    dashboard = client.get(f"/api/customers/{customer.pk}/dashboard")
    _assert_fallback(dashboard, "customer_dashboard")
    assert dashboard.json()["balance_cents"] == 100_000
    assert dashboard.json()["order_count"] == 1


def test_the_fallback_still_checks_ownership(shop, settings, client_for, make_customer):
    customer, _product, order = shop
    _with_slos(settings, 3600)
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    stranger = client_for(make_customer().user)
    summary = stranger.get(f"/api/orders/{order.pk}/summary")
    assert summary.status_code == 404, summary.content
    assert summary["X-Consistency"] == "strong-fallback"
    assert stranger.get(f"/api/customers/{customer.pk}/dashboard").status_code == 404


def test_with_elasticsearch_down_searches_answer_503_with_retry_after(
    shop, settings, client_for, staff_client
):
    customer, _product, _order = shop
    _with_slos(settings, 3600)
    settings.ELASTICSEARCH_URL = f"http://127.0.0.1:{free_port()}"
    responses = {
        "products_search": client_for(customer.user).get("/api/products/search?q=lamp"),
        "orders_search": client_for(customer.user).get(f"/api/customers/{customer.pk}/orders"),
    }
    responses["order search"] = staff_client.get("/api/orders/search?q=lamp")
    for name, response in responses.items():
        _assert_unavailable(response, "orders_search" if name == "order search" else name)
        assert "X-Read-Model-Lag-Ms" not in response, name


def test_past_its_slo_a_critical_view_answers_from_postgresql(shop, settings, client_for):
    customer, product, _order = shop
    _with_slos(settings, 0.05)
    # A commit that no projector runs for (no worker in this test) ages past the SLO.
    newer = commands.place_order(
        customer_id=customer.pk, lines=[commands.LineRequest(product.pk, 2)]
    ).value
    wait_until(lambda: progress.state("order_summary").lag_ms > 50, 30,
               message="the order summary's lag never passed its SLO")

    summary = client_for(customer.user).get(f"/api/orders/{newer.pk}/summary?max_wait_ms=0")
    _assert_fallback(summary, "order_summary")
    assert int(summary["X-Read-Model-Lag-Ms"]) > 50
    # Not in the view yet: only PostgreSQL could have answered this.
    assert summary.json()["id"] == str(newer.pk)
    assert summary.json()["total_cents"] == 8400


def test_past_its_slo_a_search_answers_503_with_retry_after(shop, settings, staff_client):
    _with_slos(settings, 0.05)
    commands.create_product(sku="NEW-1", name="New Lamp", category="lamps", price_cents=100)
    wait_until(lambda: progress.state("products_search").lag_ms > 50, 30,
               message="the product search's lag never passed its SLO")

    response = staff_client.get("/api/products/search?q=lamp&max_wait_ms=0")
    _assert_unavailable(response, "products_search")
    assert int(response["X-Read-Model-Lag-Ms"]) > 50


def test_a_token_read_of_a_view_past_its_slo_does_not_wait_and_says_why(
    shop, settings, client_for, staff_client
):
    """A view past its SLO (here: a commit no projector runs for) cannot get there within
    the wait: the read falls back, or answers 503, at once instead of at the wait's end."""
    customer, product, _order = shop
    _with_slos(settings, 0.05)
    newer = commands.place_order(customer_id=customer.pk, lines=[commands.LineRequest(product.pk, 2)])
    wait_until(lambda: progress.state("order_summary").lag_ms > 50, 30,
               message="the order summary's lag never passed its SLO")
    wait = 20_000  # far longer than a read that does not wait takes

    started = time.monotonic()
    summary = client_for(customer.user).get(
        f"/api/orders/{newer.value.pk}/summary?max_wait_ms={wait}",
        HTTP_X_CONSISTENCY_TOKEN=newer.token,
    )
    search = staff_client.get(f"/api/products/search?q=lamp&max_wait_ms={wait}",
                              HTTP_X_CONSISTENCY_TOKEN=newer.token)
    took = time.monotonic() - started

    assert took < wait / 1000 / 2, f"the reads waited for a view past its SLO ({took:.1f} s)"
    _assert_fallback(summary, "order_summary")
    assert summary["X-Fallback-Reason"] == "behind"
    assert summary.json()["id"] == str(newer.value.pk)
    _assert_unavailable(search, "products_search")
    assert search["X-Fallback-Reason"] == "behind"
    assert "behind" in search.json()["error"]["message"]
    assert "SLO" in search.json()["error"]["message"]


def test_a_view_whose_store_is_down_says_so(shop, settings, client_for):
    customer, _product, order = shop
    _with_slos(settings, 3600)
    settings.ELASTICSEARCH_URL = f"http://127.0.0.1:{free_port()}"
    response = client_for(customer.user).get(f"/api/customers/{customer.pk}/orders")
    _assert_unavailable(response, "orders_search")
    assert response["X-Fallback-Reason"] == "store-unavailable"
    assert "did not answer" in response.json()["error"]["message"]
