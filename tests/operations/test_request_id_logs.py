"""A request id follows a command into its outbox rows and the projector's log lines."""

import json
import logging

import pytest

from orders.models import OutboxMessage
from shop.web.logs import JsonFormatter
from tests.support.readside import project_all

pytestmark = pytest.mark.django_db(transaction=True)


def test_request_id_reaches_outbox_rows_and_projector_logs(
    read_models, staff_client, make_customer, make_product, caplog
):
    customer = make_customer(balance_cents=10_000)
    product = make_product()
    response = staff_client.post(
        "/api/orders",
        {"customer_id": customer.pk, "lines": [{"product_id": product.pk, "quantity": 1}]},
        format="json",
        HTTP_X_REQUEST_ID="req-42-abc",
    )
    assert response.status_code == 201
    assert response["X-Request-ID"] == "req-42-abc"
    rows = OutboxMessage.objects.filter(request_id="req-42-abc")
    assert sorted(rows.values_list("aggregate_type", flat=True)) == ["order", "product"]

    with caplog.at_level(logging.INFO, logger="readmodels.pipeline.writing"):
        project_all()
    lines = [
        json.loads(JsonFormatter().format(r))
        for r in caplog.records
        if "req-42-abc" in getattr(r, "request_ids", [])
    ]
    assert {line["read_model"] for line in lines} == {
        "order_summary", "orders_search", "customer_dashboard", "products_search"
    }
    assert all(line["level"] == "INFO" and line["message"].startswith("projected") for line in lines)


def test_a_request_without_an_id_gets_one(staff_client, make_customer):
    customer = make_customer()
    response = staff_client.get(f"/api/customers/{customer.pk}")
    assert len(response["X-Request-ID"]) == 32
    odd = staff_client.get(f"/api/customers/{customer.pk}", HTTP_X_REQUEST_ID="bad id\n!")
    assert odd["X-Request-ID"] != "bad id\n!"
