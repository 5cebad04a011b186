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


def _schema_of(schema, operation, status="200") -> dict:
    content = operation["responses"][status]["content"]["application/json"]["schema"]
    if "$ref" in content:
        return schema["components"]["schemas"][content["$ref"].rsplit("/", 1)[1]]
    return content


@pytest.mark.parametrize("path", PROJECTED_READS)
def test_projected_reads_have_a_response_schema_and_say_which_token_governed(schema, path):
    operation = schema["paths"][path]["get"]
    body = _schema_of(schema, operation)
    assert body.get("properties"), f"{path} answers a free-form object"
    assert {"X-Consistency-Source", "X-Consistency-Wait-Ms", "X-Request-ID"} <= _headers(operation)
    assert {"Retry-After", "X-Read-Model"} <= set(operation["responses"]["503"]["headers"])
    parameters = {(p["in"], p["name"]) for p in operation["parameters"]}
    assert ("query", "consistency") in parameters
    token = next(p for p in operation["parameters"] if p["name"] == "X-Consistency-Token")
    assert "none" in token["description"] and "session" in token["description"]


@pytest.mark.parametrize("path", ["/api/products/search", "/api/orders/search",
                                  "/api/customers/{customer_id}/orders"])
def test_lists_link_their_pages_and_call_keys_id(schema, path):
    body = _schema_of(schema, schema["paths"][path]["get"])
    assert {"next", "previous", "results"} <= set(body["properties"])
    hit = schema["components"]["schemas"][body["properties"]["results"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert "id" in hit["properties"] and "product_id" not in hit["properties"]


@pytest.mark.parametrize("path,method", COMMANDS)
def test_commands_document_replays_and_key_limits(schema, path, method):
    operation = schema["paths"][path][method]
    assert "Idempotent-Replayed" in _headers(operation)
    key = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
    assert "255" in key["description"]


@pytest.mark.parametrize("path", ["/api/customers", "/api/products", "/api/orders"])
def test_creations_document_location(schema, path):
    assert "Location" in schema["paths"][path]["post"]["responses"]["201"]["headers"]


def test_the_root_me_and_the_stream_are_documented(schema):
    assert _schema_of(schema, schema["paths"]["/api/"]["get"])["properties"]["resources"]
    me = _schema_of(schema, schema["paths"]["/api/me"]["get"])
    assert {"id", "is_staff", "customer_id"} <= set(me["properties"])
    stream = schema["paths"]["/api/consistency/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert {"token", "views", "max_wait_ms"} <= {p["name"] for p in stream["parameters"]}
