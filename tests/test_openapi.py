"""The OpenAPI schema states each read's consistency and documents the consistency headers."""

import pytest
import yaml

pytestmark = pytest.mark.django_db

STRONG_READS = ["/api/customers/{customer_id}", "/api/products/{product_id}", "/api/orders/{order_id}"]
PROJECTED_READS = [
    "/api/products/search",
    "/api/customers/{customer_id}/orders",
    "/api/customers/{customer_id}/dashboard",
    "/api/orders/search",
    "/api/orders/{order_id}/summary",
    "/api/stats/orders",
]
COMMANDS = [
    ("/api/customers", "post"),
    ("/api/customers/{customer_id}/top-ups", "post"),
    ("/api/products", "post"),
    ("/api/products/{product_id}", "patch"),
    ("/api/products/{product_id}/restock", "post"),
    ("/api/orders", "post"),
    ("/api/orders/{order_id}/pay", "post"),
    ("/api/orders/{order_id}/cancel", "post"),
    ("/api/orders/{order_id}/ship", "post"),
]


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from django.test import Client

    with django_db_blocker.unblock():
        response = Client().get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def _headers(operation) -> set[str]:
    names = set()
    for response in operation["responses"].values():
        names |= set(response.get("headers", {}))
    return names


@pytest.mark.parametrize("path", STRONG_READS)
def test_strong_reads_say_strong(schema, path):
    operation = schema["paths"][path]["get"]
    assert "**strong**" in operation["description"]
    assert {"X-Consistency", "ETag"} <= _headers(operation)


@pytest.mark.parametrize("path", PROJECTED_READS)
def test_projected_reads_say_eventual_and_document_headers(schema, path):
    operation = schema["paths"][path]["get"]
    assert "**eventual**" in operation["description"]
    assert {"X-Consistency", "X-Read-Model", "X-Read-Model-Lag-Ms", "X-Stale"} <= _headers(operation)
    parameters = {(p["in"], p["name"]) for p in operation["parameters"]}
    assert ("header", "X-Consistency-Token") in parameters
    assert ("query", "max_wait_ms") in parameters


@pytest.mark.parametrize("path,method", COMMANDS)
def test_commands_document_token_and_idempotency_key(schema, path, method):
    operation = schema["paths"][path][method]
    assert "X-Consistency-Token" in _headers(operation)
    assert ("header", "Idempotency-Key") in {(p["in"], p["name"]) for p in operation["parameters"]}


def test_docs_page_renders(client):
    assert client.get("/api/docs/").status_code == 200
