"""The Django admin writes through the commands: every change lands in the outbox."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages

from orders import commands
from orders.models import Customer, Order, OutboxMessage, Payment, Product

pytestmark = pytest.mark.django_db


def _events(aggregate_type: str, aggregate_id) -> list[tuple[str, int]]:
    return list(
        OutboxMessage.objects.filter(aggregate_type=aggregate_type, aggregate_id=str(aggregate_id))
        .order_by("position")
        .values_list("event_type", "aggregate_version")
    )


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _run_action(client, model: str, action: str, ids, **extra):
    data = {"action": action, "_selected_action": [str(i) for i in ids], "index": "0", **extra}
    return client.post(f"/admin/orders/{model}/", data)


def test_adding_a_product_writes_the_row_and_its_outbox_row(admin_client_):
    response = admin_client_.post(
        "/admin/orders/product/add/",
        {
            "sku": "ADM-1",
            "name": "Admin kettle",
            "description": "Boils",
            "category": "kitchen",
            "price_cents": "2500",
            "stock": "7",
            "active": "on",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    product = Product.objects.get(sku="ADM-1")
    assert (product.name, product.price_cents, product.stock, product.version) == (
        "Admin kettle",
        2500,
        7,
        1,
    )
    assert _events("product", product.pk) == [("ProductCreated", 1)]
    payload = OutboxMessage.objects.get(aggregate_id=str(product.pk)).payload
    assert payload["sku"] == "ADM-1"
    assert payload["stock"] == 7


def test_adding_a_product_with_a_taken_sku_writes_nothing(admin_client_, make_product):
    make_product(sku="TAKEN")
    products, outbox = Product.objects.count(), OutboxMessage.objects.count()
    response = admin_client_.post(
        "/admin/orders/product/add/",
        {"sku": "TAKEN", "name": "x", "category": "c", "price_cents": "1", "stock": "0"},
    )
    assert response.status_code == 200  # the form comes back with an error
    assert (Product.objects.count(), OutboxMessage.objects.count()) == (products, outbox)


def test_adding_a_customer_writes_the_row_and_its_outbox_row(admin_client_):
    response = admin_client_.post(
        "/admin/orders/customer/add/",
        {"email": "Dora@Example.com", "name": "Dora", "_save": "Save"},
    )
    assert response.status_code == 302, response.content[:2000]
    customer = Customer.objects.get(email="dora@example.com")
    assert customer.name == "Dora"
    assert customer.balance_cents == 0
    assert customer.user.username == "dora@example.com"
    assert _events("customer", customer.pk) == [("CustomerRegistered", 1)]


def test_a_refused_customer_is_reported_not_a_server_error(admin_client_, make_customer):
    existing = make_customer(email="taken@example.com")
    customers, outbox = Customer.objects.count(), OutboxMessage.objects.count()
    # The same email in another case passes the form, and the command refuses it.
    response = admin_client_.post(
        "/admin/orders/customer/add/", {"email": "TAKEN@example.com", "name": "Again"}
    )
    assert response.status_code in (200, 302)
    # An email too long to be a login name (usernames are at most 150 characters).
    long_email = "a" * 60 + "@" + "b" * 60 + "." + "c" * 40 + ".com"
    response = admin_client_.post(
        "/admin/orders/customer/add/", {"email": long_email, "name": "Long"}
    )
    assert response.status_code == 302
    assert any("Not saved" in m for m in _messages(response))
    assert (Customer.objects.count(), OutboxMessage.objects.count()) == (customers, outbox)
    assert Customer.objects.get(pk=existing.pk).name == existing.name


def test_editing_a_customer_writes_customer_updated(admin_client_, make_customer):
    customer = make_customer(name="Old")
    response = admin_client_.post(
        f"/admin/orders/customer/{customer.pk}/change/", {"name": "New", "_save": "Save"}
    )
    assert response.status_code == 302, response.content[:2000]
    customer.refresh_from_db()
    assert (customer.name, customer.version) == ("New", 2)
    assert _events("customer", customer.pk)[-1] == ("CustomerUpdated", 2)


def test_editing_a_product_writes_product_updated_with_the_next_version(
    admin_client_, make_product
):
    product = make_product(name="Kettle", price_cents=1000, stock=4)
    response = admin_client_.post(
        f"/admin/orders/product/{product.pk}/change/",
        {
            "name": "Kettle 2",
            "description": product.description,
            "category": product.category,
            "price_cents": "1100",
            "active": "on",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    product.refresh_from_db()
    assert (product.name, product.price_cents, product.stock, product.version) == (
        "Kettle 2",
        1100,
        4,
        2,
    )
    assert _events("product", product.pk) == [("ProductCreated", 1), ("ProductUpdated", 2)]
    row = OutboxMessage.objects.filter(event_type="ProductUpdated").get()
    assert sorted(row.payload["changed"]) == ["name", "price_cents"]


def test_the_product_form_cannot_change_stock_or_sku(admin_client_, make_product):
    product = make_product(sku="KEEP", stock=4)
    response = admin_client_.post(
        f"/admin/orders/product/{product.pk}/change/",
        {
            "sku": "CHANGED",
            "stock": "999",
            "name": product.name,
            "category": product.category,
            "price_cents": str(product.price_cents),
            "active": "on",
        },
    )
    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.sku, product.stock) == ("KEEP", 4)


def test_restock_action_writes_product_restocked(admin_client_, make_product):
    first, second = make_product(stock=1), make_product(stock=2)
    response = _run_action(admin_client_, "product", "restock", [first.pk, second.pk],
                           quantity="5")
    assert response.status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.stock, first.version, second.stock, second.version) == (6, 2, 7, 2)
    assert _events("product", first.pk)[-1] == ("ProductRestocked", 2)
    assert _events("product", second.pk)[-1] == ("ProductRestocked", 2)
    assert OutboxMessage.objects.get(
        aggregate_id=str(first.pk), event_type="ProductRestocked"
    ).payload["quantity"] == 5


@pytest.mark.parametrize("quantity", ["", "0", "-3", "abc", "1.5"])
def test_restock_action_without_a_positive_quantity_does_nothing(
    quantity, admin_client_, make_product
):
    product = make_product(stock=1)
    outbox = OutboxMessage.objects.count()
    response = _run_action(admin_client_, "product", "restock", [product.pk], quantity=quantity)
    assert response.status_code in (200, 302)
    product.refresh_from_db()
    assert (product.stock, product.version) == (1, 1)
    assert OutboxMessage.objects.count() == outbox


def test_order_cancel_action_goes_through_the_command(admin_client_, make_customer, make_order):
    customer = make_customer(balance_cents=10_000)
    order = make_order(customer=customer)
    commands.pay_order(order_id=order.pk)
    response = _run_action(admin_client_, "order", "cancel", [order.pk])
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == "cancelled"
    customer.refresh_from_db()
    assert customer.balance_cents == 10_000
    assert Payment.objects.filter(order=order, kind="refund").count() == 1
    assert _events("order", order.pk)[-1] == ("OrderCancelled", order.version)
    product_id = order.lines.get().product_id
    assert _events("product", product_id)[-1][0] == "StockReleased"
    assert _events("customer", customer.pk)[-1][0] == "CustomerRefunded"


def test_order_ship_action_goes_through_the_command(admin_client_, make_order):
    paid, pending = make_order(), make_order()
    commands.pay_order(order_id=paid.pk)
    outbox = OutboxMessage.objects.count()
    response = _run_action(admin_client_, "order", "ship", [paid.pk, pending.pk])
    assert response.status_code == 302
    paid.refresh_from_db()
    pending.refresh_from_db()
    assert (paid.status, pending.status) == ("shipped", "pending")
    assert _events("order", paid.pk)[-1] == ("OrderShipped", paid.version)
    # The pending order was refused by the command, and the refusal is reported.
    assert OutboxMessage.objects.count() == outbox + 1
    messages = _messages(response)
    assert any("Ship: 1 done" in m for m in messages), messages
    assert any("refused" in m for m in messages), messages


def test_an_order_page_cannot_change_the_order(admin_client_, make_order):
    order = make_order()
    assert admin_client_.get(f"/admin/orders/order/{order.pk}/change/").status_code == 200
    response = admin_client_.post(
        f"/admin/orders/order/{order.pk}/change/", {"status": "shipped", "total_cents": "0"}
    )
    assert response.status_code == 403
    order.refresh_from_db()
    assert (order.status, order.version) == ("pending", 1)
    assert admin_client_.get("/admin/orders/order/add/").status_code == 403


def test_outbox_changelist_renders_and_has_no_add_or_delete(admin_client_, make_order):
    make_order()
    response = admin_client_.get("/admin/orders/outboxmessage/")
    assert response.status_code == 200
    assert b"OrderPlaced" in response.content
    assert b"/admin/orders/outboxmessage/add/" not in response.content
    assert b"delete_selected" not in response.content
    assert admin_client_.get("/admin/orders/outboxmessage/add/").status_code == 403
    row = OutboxMessage.objects.first()
    assert admin_client_.get(f"/admin/orders/outboxmessage/{row.pk}/change/").status_code == 200
    assert admin_client_.get(f"/admin/orders/outboxmessage/{row.pk}/delete/").status_code == 403
    count = OutboxMessage.objects.count()
    response = admin_client_.post(
        f"/admin/orders/outboxmessage/{row.pk}/change/", {"event_type": "Forged"}
    )
    assert response.status_code == 403
    response = admin_client_.post(f"/admin/orders/outboxmessage/{row.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert OutboxMessage.objects.count() == count
    assert OutboxMessage.objects.get(pk=row.pk).event_type == row.event_type


@pytest.mark.parametrize("model", ["customer", "product", "order"])
def test_nothing_can_be_deleted(model, admin_client_, make_order):
    order = make_order()
    obj = {"customer": order.customer, "product": order.lines.get().product, "order": order}[model]
    changelist = admin_client_.get(f"/admin/orders/{model}/")
    assert changelist.status_code == 200
    assert b"delete_selected" not in changelist.content
    assert admin_client_.get(f"/admin/orders/{model}/{obj.pk}/delete/").status_code == 403
    response = admin_client_.post(f"/admin/orders/{model}/{obj.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    # The bulk delete action is not offered, so posting it deletes nothing.
    _run_action(admin_client_, model, "delete_selected", [obj.pk], post="yes")
    assert type(obj).objects.filter(pk=obj.pk).exists()
    assert Order.objects.filter(pk=order.pk).exists()
