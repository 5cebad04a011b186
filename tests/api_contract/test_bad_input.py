"""Property-based bad input against every write-side endpoint.

Whatever arrives (wrong types, huge or negative numbers, nested garbage, unknown ids,
NUL bytes, broken JSON, form data, XML, odd headers), the API must answer with a 2xx or
a JSON 4xx, never a 5xx, and a refused request must not have written anything. A 2xx
command always appended to the outbox.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import pytest
from django.db.models import Sum
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orders import commands
from orders.models import Customer, Order, OrderLine, OutboxMessage, Payment, Product

pytestmark = pytest.mark.django_db

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x00" * 10,
    "SKU\x00-1",
    "ann\x00@example.com",
    "\u202e",
    "\ufeff",
    "😀" * 3,
    "x" * 300,
    "x" * 6000,
    "1",
    "-1",
    "1e3",
    "1.5",
    "NaN",
    "Infinity",
    "true",
    "null",
    "[]",
    "{}",
    "<xml/>",
    "'; DROP TABLE orders_order; --",
    "%s",
    "{0}",
    "00000000-0000-0000-0000-000000000000",
    "ann@example.com",
]
NASTY_INTS = [0, -1, 1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63), 2**64, 10**30, -(10**30)]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(NASTY_INTS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(NASTY_STRINGS),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(NASTY_STRINGS)), children,
                        max_size=4),
    ),
    max_leaves=12,
)

# Not JSON at all: always a 400 parse_error once the body is read.
UNPARSEABLE_JSON = [
    b"{",
    b"}",
    b"[1,",
    b'{"a": }',
    b'{"a": 1,}',
    b"{'a': 1}",
    b'{"a": NaN}',
    b'{"quantity": Infinity}',
    b"-Infinity",
    b'{"a": 1}garbage',
    b"\xff\xfe\x00\x00",
    b"\xc3\x28",
    b'{"name": "\xff"}',
    b"\x00",
    # Deeper than Python's recursion limit.
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
]
# JSON, but odd: lone surrogates, NUL characters, huge numbers, deep nesting, no object.
ODD_JSON = [
    b"",
    b'"\\ud800"',
    b'{"name": "\\ud800", "email": "\\udfff@example.com", "sku": "\\ud800"}',
    b'{"name": "\\u0000", "sku": "\\u0000", "email": "a\\u0000@example.com", "category": "\\u0000"}',
    b'{"lines": [{"product_id": "\\u0000", "quantity": "\\u0000"}]}',
    b'{"lines": [{"product_id": 1e400, "quantity": 1e400}], "customer_id": 1e400}',
    b'{"\\u0000": "\\u0000"}',
    b"[" * 900 + b"]" * 900,
    b'{"lines": ' + b"[" * 900 + b"]" * 900 + b"}",
    b'{"amount_cents": 1e400, "quantity": 1e400, "price_cents": -1e400}',
    b'{"amount_cents": 1' + b"0" * 50 + b', "quantity": -1' + b"0" * 50 + b"}",
    b"null",
    b"0",
    b'"text"',
    b"[]",
]
BROKEN_JSON = UNPARSEABLE_JSON + ODD_JSON
FOREIGN_BODIES = [
    ("application/x-www-form-urlencoded", b"amount_cents=100&quantity=1&name=x"),
    ("multipart/form-data; boundary=BoUnDaRy",
     b'--BoUnDaRy\r\nContent-Disposition: form-data; name="quantity"\r\n\r\n1\r\n--BoUnDaRy--\r\n'),
    ("multipart/form-data", b"garbage"),
    ("text/plain", b'{"quantity": 1}'),
    ("text/plain", b"hello"),
    ("application/xml", b'<?xml version="1.0"?><order><quantity>1</quantity></order>'),
    ("text/xml", b"<a><b>"),
    ("application/octet-stream", b"\x00\x01\x02"),
    ("application/json; charset=utf-16", b'{"quantity": 1}'),
    ("application/json; charset=bogus", b'{"quantity": 1}'),
    ("application/json; charset=latin-1", b'{"name": "\xe9"}'),
    ("application/merge-patch+json", b'{"name": "x"}'),
    ("", b'{"quantity": 1}'),
    ("application/json\x00", b"{}"),
]
CONTENT_TYPES = [ct for ct, _ in FOREIGN_BODIES]

if_match_values = st.one_of(
    st.sampled_from(['"1"', '"2"', '"3"', 'W/"1"', "*", '"0"', '"9999999999"', '"99999999999"',
                     "", "\x00", '"1', "1", '"-1"', '"1", "2"']),
    st.text(max_size=20),
)
idempotency_keys = st.one_of(
    # A fresh key most of the time (Hypothesis repeats the values it draws).
    st.just("fresh"),
    st.just("fresh"),
    st.just("fresh"),
    st.uuids().map(str),
    st.sampled_from(["k", "", "\x00", "a\x00b", "x" * 255, "x" * 256, " "]),
    st.text(max_size=40),
)


def _counts() -> dict:
    money = Customer.objects.aggregate(balance=Sum("balance_cents"), versions=Sum("version"))
    stock = Product.objects.aggregate(stock=Sum("stock"), versions=Sum("version"))
    return {
        "customers": Customer.objects.count(),
        "products": Product.objects.count(),
        "orders": Order.objects.count(),
        "lines": OrderLine.objects.count(),
        "payments": Payment.objects.count(),
        "outbox": OutboxMessage.objects.count(),
        "balance": money["balance"],
        "customer_versions": money["versions"],
        "stock": stock["stock"],
        "product_versions": stock["versions"],
        "order_versions": Order.objects.aggregate(v=Sum("version"))["v"],
    }


def _check(response, before: dict, *, command: bool) -> None:
    status = response.status_code
    assert status < 500, (status, response.content[:500])
    after = _counts()
    if status >= 400:
        assert response["Content-Type"].startswith("application/json"), (
            status,
            response["Content-Type"],
            response.content[:300],
        )
        body = json.loads(response.content)
        assert isinstance(body, dict) and set(body) == {"error"}, body
        error = body["error"]
        assert isinstance(error, dict), body
        assert isinstance(error.get("code"), str) and error["code"], body
        assert isinstance(error.get("message"), str), body
        assert set(error) <= {"code", "message", "fields"}, body
        assert after == before, (status, body)
    elif command and response.get("Idempotent-Replayed") != "true":
        assert 200 <= status < 300, status
        assert after["outbox"] > before["outbox"], (status, response.content[:300])
    else:
        # A read, or a replay of a stored answer: nothing is written.
        assert after == before, (status, response.content[:300])


class Shop:
    """The actors and rows one test works on."""

    def __init__(self, make_customer, make_product, make_order, staff_client, client_for,
                 anon_client):
        self.customer = make_customer(balance_cents=1_000_000)
        self.other = make_customer(balance_cents=1_000_000)
        self.product = make_product(stock=1000, price_cents=100)
        self.inactive = make_product(stock=10, active=False)
        self.orders = [make_order(customer=self.customer) for _ in range(3)]
        paid = make_order(customer=self.customer)
        commands.pay_order(order_id=paid.pk)
        self.orders.append(paid)
        self.others_order = make_order(customer=self.other)
        self.clients = {
            "staff": staff_client,
            "customer": client_for(self.customer.user),
            "other": client_for(self.other.user),
            "anon": anon_client,
        }

    def customer_ids(self):
        return st.one_of(
            st.sampled_from([self.customer.pk, self.other.pk]),
            st.sampled_from([self.customer.pk, self.other.pk]),
            st.integers(min_value=0, max_value=10**30),
            st.sampled_from([0, 2**31, 2**63 - 1, 2**63, 10**30]),
        )

    def product_ids(self):
        return st.one_of(
            st.sampled_from([self.product.pk, self.inactive.pk]),
            st.sampled_from([self.product.pk, self.inactive.pk]),
            st.integers(min_value=0, max_value=10**30),
            st.sampled_from([0, 2**31, 2**63 - 1, 2**63, 10**30]),
        )

    def order_ids(self):
        return st.one_of(
            st.sampled_from([str(o.pk) for o in [*self.orders, self.others_order]]),
            st.uuids().map(str),
        )


@pytest.fixture
def shop(make_customer, make_product, make_order, staff_client, client_for, anon_client):
    return Shop(make_customer, make_product, make_order, staff_client, client_for, anon_client)


def _body(data, fields: dict, valid) -> tuple[str, bytes]:
    """Draw a request body: well-formed, field-shaped garbage, any JSON, broken JSON, or
    another media type."""
    kind = data.draw(
        st.sampled_from(["valid", "valid", "fields", "fields", "json", "broken", "foreign"])
    )
    if kind == "valid":
        value = data.draw(valid)
    elif kind == "fields":
        names = list(fields)
        value = data.draw(
            st.one_of(
                # A valid-looking body with one or more fields replaced by garbage.
                st.builds(
                    lambda base, garbage: {**base, **garbage},
                    st.fixed_dictionaries(fields),
                    st.dictionaries(st.sampled_from(names), json_values, min_size=1),
                ),
                # Any subset of the fields, each with any value, plus unknown fields.
                st.dictionaries(
                    st.one_of(st.sampled_from(names), st.text(max_size=6)), json_values,
                    max_size=len(names) + 2,
                ),
                # Well-typed values in odd combinations.
                st.fixed_dictionaries({}, optional=fields),
            )
        )
    elif kind == "json":
        value = data.draw(json_values)
    elif kind == "broken":
        return "application/json", data.draw(st.sampled_from(BROKEN_JSON) | st.binary(max_size=40))
    else:
        content_type, raw = data.draw(
            st.one_of(
                st.sampled_from(FOREIGN_BODIES),
                st.tuples(st.sampled_from(CONTENT_TYPES), st.binary(max_size=40)),
            )
        )
        return content_type, raw
    ensure_ascii = data.draw(st.booleans())
    return "application/json", json.dumps(value, ensure_ascii=ensure_ascii).encode()


def _headers(data) -> dict:
    headers = {}
    if data.draw(st.integers(0, 3)) == 0:
        key = data.draw(idempotency_keys)
        headers["HTTP_IDEMPOTENCY_KEY"] = str(uuid.uuid4()) if key == "fresh" else key
    if data.draw(st.integers(0, 3)) == 0:
        headers["HTTP_IF_MATCH"] = data.draw(if_match_values)
    return headers


def _send(shop, data, method: str, path: str, fields: dict, valid,
          actors=("staff", "customer")):
    actor = data.draw(st.sampled_from([*actors, *actors, "other", "anon"]))
    client = shop.clients[actor]
    content_type, raw = _body(data, fields, valid)
    headers = _headers(data)
    before = _counts()
    response = client.generic(method, path, raw, content_type=content_type, **headers)
    _check(response, before, command=True)
    # Shown by --hypothesis-show-statistics: how far into the endpoint the examples got.
    code = response.json()["error"]["code"] if response.status_code >= 400 else ""
    event(f"{response.status_code} {code}")
    return response


emails = st.one_of(st.emails(), st.sampled_from(NASTY_STRINGS), st.text(max_size=30))
names = st.one_of(st.text(max_size=30), st.sampled_from(NASTY_STRINGS))
skus = st.one_of(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,70}\Z"),
                 st.sampled_from(NASTY_STRINGS))
money = st.one_of(st.integers(), st.sampled_from(NASTY_INTS),
                  st.integers(min_value=1, max_value=10**12))
quantities = st.one_of(st.integers(), st.sampled_from(NASTY_INTS),
                       st.integers(min_value=1, max_value=10))
good_names = st.text(min_size=1, max_size=200)
good_skus = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
good_prices = st.integers(min_value=1, max_value=10**10)
edge_quantities = st.one_of(st.integers(min_value=1, max_value=10**6), st.integers(1, 5))
PRODUCT_OPTIONAL = {
    "description": st.text(max_size=100),
    "stock": st.integers(min_value=0, max_value=10**9),
    "active": st.booleans(),
}


@SETTINGS
@given(data=st.data())
def test_register_customer(shop, data):
    fields = {"email": emails, "name": names}
    valid = st.fixed_dictionaries({"email": st.emails(), "name": good_names})
    _send(shop, data, "POST", "/api/customers", fields, valid)


@SETTINGS
@given(data=st.data())
def test_top_up(shop, data):
    customer_id = data.draw(shop.customer_ids())
    valid = st.fixed_dictionaries({"amount_cents": st.integers(min_value=1, max_value=10**12)})
    _send(shop, data, "POST", f"/api/customers/{customer_id}/top-ups",
          {"amount_cents": money}, valid, actors=("staff",))


@SETTINGS
@given(data=st.data())
def test_create_product(shop, data):
    fields = {
        "sku": skus,
        "name": names,
        "description": names,
        "category": names,
        "price_cents": money,
        "stock": quantities,
        "active": st.one_of(st.booleans(), json_values),
    }
    valid = st.fixed_dictionaries(
        {"sku": good_skus, "name": good_names, "category": st.text(min_size=1, max_size=100),
         "price_cents": good_prices},
        optional=PRODUCT_OPTIONAL,
    )
    _send(shop, data, "POST", "/api/products", fields, valid, actors=("staff",))


@SETTINGS
@given(data=st.data())
def test_patch_product(shop, data):
    product_id = data.draw(shop.product_ids())
    fields = {
        "name": names,
        "description": names,
        "category": names,
        "price_cents": money,
        "active": st.one_of(st.booleans(), json_values),
        "stock": quantities,
        "sku": skus,
        "version": quantities,
    }
    valid = st.fixed_dictionaries(
        {},
        optional={"name": good_names, "category": st.text(min_size=1, max_size=100),
                  "price_cents": good_prices, "description": st.text(max_size=100),
                  "active": st.booleans()},
    )
    _send(shop, data, "PATCH", f"/api/products/{product_id}", fields, valid, actors=("staff",))


@SETTINGS
@given(data=st.data())
def test_restock(shop, data):
    product_id = data.draw(shop.product_ids())
    valid = st.fixed_dictionaries({"quantity": edge_quantities})
    _send(shop, data, "POST", f"/api/products/{product_id}/restock", {"quantity": quantities},
          valid, actors=("staff",))


@SETTINGS
@given(data=st.data())
def test_place_order(shop, data):
    line = st.one_of(
        st.fixed_dictionaries({"product_id": shop.product_ids(), "quantity": quantities}),
        st.dictionaries(st.sampled_from(["product_id", "quantity", "x"]), json_values),
        json_values,
    )
    fields = {
        "customer_id": st.one_of(shop.customer_ids(), json_values),
        "lines": st.one_of(st.lists(line, max_size=5), st.lists(line, min_size=99, max_size=102),
                           json_values),
    }
    good_line = st.fixed_dictionaries(
        {"product_id": st.one_of(st.just(shop.product.pk), shop.product_ids()),
         "quantity": edge_quantities}
    )
    valid = st.fixed_dictionaries(
        {"lines": st.one_of(st.lists(good_line, min_size=1, max_size=5),
                            st.lists(good_line, min_size=100, max_size=101))},
        optional={"customer_id": shop.customer_ids()},
    )
    _send(shop, data, "POST", "/api/orders", fields, valid)


@pytest.mark.parametrize("action", ["pay", "cancel", "ship"])
@SETTINGS
@given(data=st.data())
def test_order_transitions(shop, data, action):
    order_id = data.draw(shop.order_ids())
    fields = {"status": json_values, "version": quantities, "customer_id": shop.customer_ids()}
    valid = st.one_of(st.just({}), st.none())
    actors = ("staff",) if action == "ship" else ("staff", "customer")
    _send(shop, data, "POST", f"/api/orders/{order_id}/{action}", fields, valid, actors=actors)


def _segments(ids):
    text = st.text(
        alphabet=st.characters(exclude_characters="/", exclude_categories=["Cs"]), max_size=20
    ).filter(lambda s: s not in ("search", "", ".", ".."))
    return st.one_of(ids.map(str), text.map(lambda s: quote(s, safe="")),
                     st.sampled_from(["-1", "0", "1.5", "1e3", "%00", "a%00b", "10" * 20]))


@SETTINGS
@given(data=st.data())
def test_strong_reads(shop, data):
    kind = data.draw(st.sampled_from(["customers", "products", "orders"]))
    ids = {
        "customers": shop.customer_ids(),
        "products": shop.product_ids(),
        "orders": shop.order_ids(),
    }[kind]
    segment = data.draw(_segments(ids))
    actor = data.draw(st.sampled_from(["staff", "customer", "other", "anon"]))
    headers = {}
    if data.draw(st.booleans()):
        headers["HTTP_IF_MATCH"] = data.draw(if_match_values)
    before = _counts()
    response = shop.clients[actor].get(f"/api/{kind}/{segment}", **headers)
    _check(response, before, command=False)
    event(str(response.status_code))
    if response.status_code == 200:
        assert response["X-Consistency"] == "strong"
        assert response["ETag"] == f'"{response.json()["version"]}"'


COMMANDS = [
    ("POST", "/api/customers"),
    ("POST", "/api/customers/{customer}/top-ups"),
    ("POST", "/api/products"),
    ("PATCH", "/api/products/{product}"),
    ("POST", "/api/products/{product}/restock"),
    ("POST", "/api/orders"),
    ("POST", "/api/orders/{order}/pay"),
    ("POST", "/api/orders/{order}/cancel"),
    ("POST", "/api/orders/{order}/ship"),
]


def _url(shop, path: str) -> str:
    return path.format(customer=shop.customer.pk, product=shop.product.pk, order=shop.orders[0].pk)


@pytest.mark.parametrize("method, path", COMMANDS)
def test_every_command_refuses_broken_json(shop, method, path):
    """Each broken body against each command, with a fresh key so the body is always parsed."""
    for actor in ("staff", "customer", "anon"):
        for raw in BROKEN_JSON:
            before = _counts()
            response = shop.clients[actor].generic(
                method, _url(shop, path), raw, content_type="application/json",
                HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
            )
            _check(response, before, command=True)
            if raw in UNPARSEABLE_JSON and actor != "anon":
                assert response.status_code == 400, (raw[:40], response.content)
                assert response.json()["error"]["code"] == "parse_error"


@pytest.mark.parametrize("method, path", COMMANDS)
def test_every_command_refuses_foreign_media_types(shop, method, path):
    for content_type, raw in FOREIGN_BODIES:
        before = _counts()
        response = shop.clients["staff"].generic(
            method, _url(shop, path), raw, content_type=content_type,
            HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
        )
        _check(response, before, command=True)
        if not content_type.startswith("application/json;"):
            assert response.status_code in (400, 415), (content_type, response.content)
