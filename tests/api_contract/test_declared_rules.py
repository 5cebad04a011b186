"""The schema states every rule the API enforces, and the API refuses what the schema refuses.

Schemathesis (test_api_fuzz.py) checks the two against each other over many generated
requests; these pin each rule down: 429 where a throttle counts, 412 where If-Match is
read, 422 where an Idempotency-Key is, the patterns of tokens, cursors, keys, ETags and
views, and no empty parameter or JSON value of another type read as something valid.
"""

from __future__ import annotations

import base64
import re

import pytest
import yaml
from django.core import signing
from django.test import Client

from orders.models import Customer, Product
from orders.outbox import Position, encode_token, read_token
from orders.outbox.tokens import TOKEN_PATTERN
from readmodels.api.views import encode_cursor
from tests.support.readside import project_all

pytestmark = pytest.mark.django_db

WRITES = [
    ("/api/customers", "post"),
    ("/api/customers/{customer_id}/top-ups", "post"),
    ("/api/products", "post"),
    ("/api/products/{product_id}", "patch"),
    ("/api/products/{product_id}/restock", "post"),
    ("/api/orders", "post"),
    ("/api/orders/{order_id}/pay", "post"),
    ("/api/orders/{order_id}/cancel", "post"),
    ("/api/orders/{order_id}/ship", "post"),
    ("/api/payments/webhook", "post"),
    ("/api/auth/logout", "post"),
    ("/api/auth/token", "post"),
]
# Reads anyone may make: the anonymous-read throttle counts them.
PUBLIC_READS = ["/api/", "/api/products/search", "/api/products/{product_id}"]
# Reads that need a login: DRF checks permissions before throttles, and signed-in
# reads are not throttled, so they never answer 429.
SIGNED_IN_READS = ["/api/me", "/api/customers/{customer_id}", "/api/orders/{order_id}",
                   "/api/orders/search", "/api/stats/orders"]
IF_MATCH = [
    ("/api/customers/{customer_id}/top-ups", "post"),
    ("/api/products/{product_id}", "patch"),
    ("/api/products/{product_id}/restock", "post"),
    ("/api/orders/{order_id}/pay", "post"),
    ("/api/orders/{order_id}/cancel", "post"),
    ("/api/orders/{order_id}/ship", "post"),
]
COMMANDS = [w for w in WRITES if not w[0].startswith(("/api/auth", "/api/payments"))]
STREAM = "/api/consistency/stream"


@pytest.fixture
def views_up(read_models):
    project_all()


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    with django_db_blocker.unblock():
        response = Client().get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def _parameter(operation, name: str) -> dict:
    return next(p for p in operation["parameters"] if p["name"] == name)


def _error_ref(response) -> str:
    return response["content"]["application/json"]["schema"]["$ref"]


# 429 `throttled`, where a throttle can refuse.

@pytest.mark.parametrize(("path", "method"), [*WRITES, *[(p, "get") for p in PUBLIC_READS],
                                              (STREAM, "get")])
def test_every_throttled_operation_declares_429_with_retry_after(schema, path, method):
    response = schema["paths"][path][method]["responses"]["429"]
    assert _error_ref(response) == "#/components/schemas/Error"
    assert response["headers"]["Retry-After"]["schema"]["type"] == "integer"
    assert "throttled" in response["description"]


@pytest.mark.parametrize("path", SIGNED_IN_READS)
def test_reads_no_throttle_counts_declare_no_429(schema, path):
    assert "429" not in schema["paths"][path]["get"]["responses"]


# 412 and 422, where If-Match and Idempotency-Key are read.

@pytest.mark.parametrize(("path", "method"), IF_MATCH)
def test_if_match_is_an_etag_pattern_and_declares_412(schema, path, method):
    operation = schema["paths"][path][method]
    pattern = re.compile(_parameter(operation, "If-Match")["schema"]["pattern"])
    for accepted in ['"7"', 'W/"7"', '"v7"', "*"]:
        assert pattern.fullmatch(accepted)
    for refused in ["7", '"seven"', '"7', " ", ""]:
        assert not pattern.fullmatch(refused)
    assert "version_mismatch" in operation["responses"]["412"]["description"]


@pytest.mark.parametrize(("path", "method"), COMMANDS)
def test_idempotency_key_states_its_length_and_characters_and_declares_422(schema, path, method):
    operation = schema["paths"][path][method]
    pattern = re.compile(_parameter(operation, "Idempotency-Key")["schema"]["pattern"])
    assert pattern.fullmatch("k" * 255) and pattern.fullmatch("3f1c-!~")
    for refused in ["", "k" * 256, "a b", "é", "nul\x00"]:
        assert not pattern.fullmatch(refused)
    assert "idempotency_key_reused" in operation["responses"]["422"]["description"]


@pytest.mark.parametrize("path", [*PUBLIC_READS, *SIGNED_IN_READS, STREAM])
def test_reads_declare_neither_412_nor_422(schema, path):
    assert not {"412", "422"} & set(schema["paths"][path]["get"]["responses"])


# The patterns of the values a client sends back.

def _legacy_token(xid: int, position: int) -> str:
    signed = signing.Signer(salt="orders.outbox.consistency-token", algorithm="sha256").sign(
        f"ct2.{xid}.{position}")
    return base64.urlsafe_b64encode(signed.encode()).decode().rstrip("=")


def test_the_token_pattern_is_what_read_token_accepts(schema):
    tokens = [
        encode_token(Position(0, 0), cluster="0"),
        encode_token(Position(2**63 - 1, 2**63 - 1), cluster=str(2**64 - 1)),
        _legacy_token(0, 0),
        _legacy_token(2**63 - 1, 2**63 - 1),
    ]
    stream = schema["paths"][STREAM]["get"]
    search = schema["paths"]["/api/products/search"]["get"]
    assert _parameter(stream, "token")["schema"]["pattern"] == TOKEN_PATTERN
    header = re.compile(_parameter(search, "X-Consistency-Token")["schema"]["pattern"])
    query = _parameter(search, "consistency_token")["schema"]["pattern"]
    assert query == header.pattern
    for token in tokens:
        assert read_token(token) and re.fullmatch(TOKEN_PATTERN, token)
        assert header.fullmatch(token)
    assert header.fullmatch("none") and not header.fullmatch("NONE")
    assert not header.fullmatch("") and not re.fullmatch(TOKEN_PATTERN, "none")


def test_the_cursor_time_zone_views_and_max_wait_are_declared(schema):
    orders = schema["paths"]["/api/customers/{customer_id}/orders"]["get"]
    cursor = re.compile(_parameter(orders, "search_after")["schema"]["pattern"])
    assert cursor.fullmatch(encode_cursor([1_700_000_000_000, "a-b"]))
    assert not cursor.fullmatch(encode_cursor([1, "x"]) + "!")
    stats = schema["paths"]["/api/stats/orders"]["get"]
    zones = _parameter(stats, "time_zone")["schema"]["enum"]
    assert {"UTC", "Europe/Berlin"} <= set(zones) and "Mars/Olympus" not in zones
    stream = schema["paths"][STREAM]["get"]
    views = re.compile(_parameter(stream, "views")["schema"]["pattern"])
    assert views.fullmatch("order_summary,customer_dashboard")
    for refused in ["", "order_summary,", ",order_summary", "order_summary,,customer_dashboard",
                    "nothing"]:
        assert not views.fullmatch(refused)
    for operation in (stream, orders):
        wait = _parameter(operation, "max_wait_ms")["schema"]
        assert wait["type"] == "integer" and wait["minimum"] == 0


@pytest.mark.django_db(transaction=True)
# What the schema refuses, the API refuses: empty parameters.

@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/products/search?sort=", "sort"),
        ("/api/products/search?page_size=", "page_size"),
        ("/api/products/search?page=", "page"),
        ("/api/products/search?in_stock=", "in_stock"),
        ("/api/products/search?category=", "category"),
        ("/api/orders/search?q=lamp&page_size=", "page_size"),
        ("/api/customers/{customer}/orders?status=", "status"),
        ("/api/customers/{customer}/orders?page_size=", "page_size"),
        ("/api/customers/{customer}/orders?search_after=", "search_after"),
        ("/api/stats/orders?time_zone=", "time_zone"),
        ("/api/stats/orders?interval=", "interval"),
        ("/api/stats/orders?from=", "from/to"),
        # Not empty, but no integer or boolean as OpenAPI writes one in a query.
        ("/api/products/search?page_size=5.0", "page_size"),
        ("/api/products/search?page=%2B2", "page"),
        ("/api/products/search?min_price=1_000", "min_price"),
        ("/api/products/search?in_stock=yes", "in_stock"),
        ("/api/products/search?in_stock=1", "in_stock"),
    ],
)
def test_an_empty_query_parameter_is_a_400(views_up, staff_client, make_customer, path, field):
    path = path.replace("{customer}", str(make_customer().pk))
    response = staff_client.get(path, HTTP_X_CONSISTENCY_TOKEN="none")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid"
    assert field in response.json()["error"]["fields"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("query", "headers", "code"),
    [
        ("max_wait_ms=", {}, "invalid_max_wait"),
        ("max_wait_ms=5.0", {}, "invalid_max_wait"),
        ("max_wait_ms=1_000", {}, "invalid_max_wait"),
        ("max_wait_ms=%2B5", {}, "invalid_max_wait"),
        ("", {"HTTP_X_CONSISTENCY_TOKEN": ""}, "invalid_consistency_token"),
        ("consistency_token=", {}, "invalid_consistency_token"),
        ("", {"HTTP_X_CONSISTENCY_TOKEN": "NONE"}, "invalid_consistency_token"),
        ("consistency=NONE", {}, "invalid_consistency"),
    ],
)
def test_a_projected_read_refuses_what_its_schema_refuses(
    read_models, staff_client, query, headers, code
):
    response = staff_client.get(f"/api/products/search?{query}", **headers)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == code


@pytest.mark.django_db(transaction=True)
def test_a_token_with_characters_base64_would_skip_is_refused(read_models, staff_client):
    token = encode_token(Position(1, 1), cluster="1")
    assert staff_client.get("/api/products/search", HTTP_X_CONSISTENCY_TOKEN=token).status_code != 400
    for sent in [f"{token}!", f"{token[:10]}.{token[10:]}", f" {token}"]:
        response = staff_client.get("/api/products/search", {"consistency_token": sent})
        assert response.status_code == 400, sent
        assert response.json()["error"]["code"] == "invalid_consistency_token"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("views=order_summary&max_wait_ms=", "invalid_max_wait"),
        ("views=order_summary,", "invalid_views"),
        ("views=,order_summary", "invalid_views"),
        ("views=", "invalid_views"),
    ],
)
def test_the_stream_refuses_empty_values(client, query, code):
    token = encode_token(Position(1, 1), cluster="1")
    response = client.get(f"/api/consistency/stream?token={token}&{query}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == code


@pytest.mark.django_db(transaction=True)
def test_a_cursor_with_characters_base64_would_skip_is_refused(views_up, staff_client,
                                                               make_customer):
    cursor = encode_cursor([1_700_000_000_000, "00000000-0000-0000-0000-000000000000"])
    path = f"/api/customers/{make_customer().pk}/orders"
    assert staff_client.get(path, {"search_after": cursor},
                            HTTP_X_CONSISTENCY_TOKEN="none").status_code == 200
    # Four, so that the padding the decoder adds stays right and it decodes the rest.
    response = staff_client.get(path, {"search_after": f"{cursor[:4]}!!!!{cursor[4:]}"},
                                HTTP_X_CONSISTENCY_TOKEN="none")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["search_after"][0]["code"] == "invalid_cursor"


# JSON values of another type than the schema's.

@pytest.mark.parametrize("name", [4242, 42.5, True, ["Ann"], {"first": "Ann"}])
def test_a_customer_name_that_is_no_string_is_a_400_and_stores_nothing(staff_client, name):
    response = staff_client.post("/api/customers", {"email": "ann@example.com", "name": name},
                                 format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"]["name"][0]["code"] == "invalid"
    assert not Customer.objects.exists()


@pytest.mark.parametrize(
    "change",
    [{"sku": 12345}, {"category": 7}, {"price_cents": "100"}, {"stock": "5"}, {"active": 1},
     {"active": "true"}, {"price_cents": True}],
)
def test_product_fields_of_another_json_type_are_refused(staff_client, change):
    body = {"sku": "KETTLE-1", "name": "Kettle", "category": "kitchen", "price_cents": 100,
            **change}
    response = staff_client.post("/api/products", body, format="json")
    assert response.status_code == 400, response.content
    assert set(change) <= set(response.json()["error"]["fields"])
    assert not Product.objects.exists()


def test_an_integral_float_is_an_integer_as_json_schema_says(staff_client):
    body = {"sku": "KETTLE-2", "name": "Kettle", "category": "kitchen", "price_cents": 100.0}
    assert staff_client.post("/api/products", body, format="json").status_code == 201


@pytest.mark.parametrize("key", ["schlüssel", "a key", "\t"])
def test_an_idempotency_key_outside_visible_ascii_is_a_400(staff_client, key):
    response = staff_client.post("/api/customers", {"email": "ann@example.com", "name": "Ann"},
                                 format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["fields"]
    assert not Customer.objects.exists()



def test_string_fields_state_what_drf_refuses_in_them(schema):
    fields = schema["components"]["schemas"]["ProductInRequest"]["properties"]
    name = re.compile(fields["name"]["pattern"])
    assert name.fullmatch("Kettle") and name.fullmatch(" Kettle ")
    assert not name.fullmatch("   ") and not name.fullmatch("Ket\x00tle")
    description = fields["description"]["oneOf"]
    assert not re.fullmatch(description[0]["pattern"], "")  # "" is the other branch only
    assert description[1]["maxLength"] == 0


def test_a_name_longer_than_its_max_length_is_refused_as_sent(staff_client):
    name = " " * 5 + "x" * 200  # 200 characters once trimmed, 205 as sent
    response = staff_client.post("/api/customers", {"email": "ann@example.com", "name": name},
                                 format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["name"][0]["code"] == "max_length"
