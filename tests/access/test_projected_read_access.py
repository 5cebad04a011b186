"""Who may read which projected view: a customer sees only their own documents, staff
views are staff only, and a customer's order history does not depend on another view."""

from __future__ import annotations

import pytest

from orders import commands
from orders.outbox import Position
from readmodels import config, projectors, queries
from readmodels.pipeline import checkpoints, runner
from tests.support.readside import newest_committed, project_all
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def bobs_order(read_models, bob, make_product):
    order = commands.place_order(
        customer_id=bob.pk, lines=[commands.LineRequest(make_product().pk, 1)]
    ).value
    project_all()
    return order


def _error_code(response) -> str:
    return response.json()["error"]["code"]


def test_another_customers_order_summary_is_not_found(bobs_order, ann, bob, client_for):
    theirs = client_for(ann.user).get(f"/api/orders/{bobs_order.pk}/summary")
    assert theirs.status_code == 404, theirs.content
    assert _error_code(theirs) == "not_found"
    missing = client_for(ann.user).get("/api/orders/00000000-0000-0000-0000-000000000000/summary")
    assert theirs.json() == missing.json()
    assert client_for(bob.user).get(f"/api/orders/{bobs_order.pk}/summary").status_code == 200


def test_another_customers_dashboard_is_not_found(bobs_order, ann, bob, client_for):
    theirs = client_for(ann.user).get(f"/api/customers/{bob.pk}/dashboard")
    assert theirs.status_code == 404, theirs.content
    assert _error_code(theirs) == "not_found"
    assert client_for(bob.user).get(f"/api/customers/{bob.pk}/dashboard").status_code == 200


def test_another_customers_order_history_is_empty(bobs_order, ann, bob, client_for):
    # Documented choice: the history shows the caller's own orders only, so another
    # customer's id gives the same empty page as a customer without orders.
    theirs = client_for(ann.user).get(f"/api/customers/{bob.pk}/orders")
    assert theirs.status_code == 200, theirs.content
    assert theirs.json()["count"] == 0
    assert theirs.json()["results"] == []
    own = client_for(bob.user).get(f"/api/customers/{bob.pk}/orders")
    assert [o["id"] for o in own.json()["results"]] == [str(bobs_order.pk)]


def test_staff_see_any_customers_history(bobs_order, bob, staff_client):
    response = staff_client.get(f"/api/customers/{bob.pk}/orders")
    assert response.status_code == 200, response.content
    assert [o["id"] for o in response.json()["results"]] == [str(bobs_order.pk)]


@pytest.mark.parametrize("path", ["/api/orders/search?q=Product", "/api/stats/orders"])
def test_order_search_and_stats_are_staff_only(bobs_order, bob, client_for, path):
    response = client_for(bob.user).get(path)
    assert response.status_code == 403, response.content
    assert "results" not in response.json() and "buckets" not in response.json()


def _project_only(name: str) -> None:
    """Bring one read model up to the newest commit; the others stay where they are."""
    projector, target = projectors.get(name), newest_committed()

    segments = config.segments(name)

    def covered() -> bool:
        reached = True
        for segment in range(segments):
            runner.run_segment(projector, segment, segments, ignore_backoff=True)
            checkpoint = checkpoints.checkpoint_for(name, segment, segments)
            reached &= Position(checkpoint.xid, checkpoint.position).covers(target)
        return reached

    wait_until(covered, 60, message=f"{name} did not reach {target}")


def test_order_history_does_not_wait_for_the_dashboard(
    read_models, make_product, make_customer, client_for
):
    product = make_product()
    project_all()
    # A customer who just signed up orders; only orders_search has projected since.
    newcomer = make_customer(balance_cents=10_000)
    client = client_for(newcomer.user)
    placed = client.post(
        "/api/orders", {"lines": [{"product_id": product.pk, "quantity": 1}]}, format="json"
    )
    assert placed.status_code == 201, placed.content
    _project_only("orders_search")
    assert queries.customer_dashboard(newcomer.pk) is None, "the dashboard must be behind"

    history = client.get(
        f"/api/customers/{newcomer.pk}/orders?max_wait_ms=5000",
        HTTP_X_CONSISTENCY_TOKEN=placed["X-Consistency-Token"],
    )
    assert history.status_code == 200, history.content
    assert history["X-Stale"] == "false"
    assert [o["id"] for o in history.json()["results"]] == [placed.json()["id"]]
