"""What a person sees in the admin: money as money, readable rows, view pages without
Save, and refusals as admin pages (HTML), never the API's JSON."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from orders.models import Order

pytestmark = pytest.mark.django_db


def _is_admin_html(response) -> bool:
    return response["Content-Type"].startswith("text/html") and b'id="refused"' in response.content


def test_an_order_page_is_a_view_page_and_a_post_is_refused_with_an_admin_page(
    admin_client_, shipped_order
):
    page = admin_client_.get(f"/admin/orders/order/{shipped_order.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    # Money as money, lines and payments by what they are.
    assert "$37.62" in html
    assert "2 × Blue Teapot ($18.81 each)" in html
    assert "Charge of $37.62" in html
    assert "object (" not in html and "cents" not in html.lower()

    refused = admin_client_.post(
        f"/admin/orders/order/{shipped_order.pk}/change/", {"status": "pending"}
    )
    assert refused.status_code == 403
    assert _is_admin_html(refused), refused.content[:500]
    assert b'"error"' not in refused.content
    assert b"Back to the admin" in refused.content
    assert Order.objects.get(pk=shipped_order.pk).status == "shipped"


def test_the_order_list_shows_short_ids_money_and_what_was_bought(admin_client_, shipped_order):
    html = admin_client_.get("/admin/orders/order/").content.decode()
    short = str(shipped_order.pk).split("-")[0]
    # The short id links to the order; the full id is in its tooltip.
    link = rf'<a href="[^"]*{shipped_order.pk}/change/[^"]*"><span title="{shipped_order.pk}">{short}</span>'
    assert re.search(link, html)
    assert "$37.62" in html and "2 × Blue Teapot" in html
    assert "3762" not in html


def test_products_and_customers_show_money(admin_client_, make_product, make_customer):
    product = make_product(name="Kettle", price_cents=1_781)
    customer = make_customer(balance_cents=123_456)
    assert "$17.81" in admin_client_.get("/admin/orders/product/").content.decode()
    form = admin_client_.get(f"/admin/orders/product/{product.pk}/change/").content.decode()
    assert "Price in cents" in form and "$17.81" in form
    assert "$1,234.56" in admin_client_.get("/admin/orders/customer/").content.decode()
    page = admin_client_.get(f"/admin/orders/customer/{customer.pk}/change/").content.decode()
    assert "$1,234.56" in page


@pytest.mark.parametrize("path", [
    "/admin/orders/outboxmessage/{row}/change/",
    "/admin/readmodels/deadletter/{letter}/change/",
])
def test_other_view_pages_have_no_save_button(admin_client_, make_order, path):
    from orders.models import OutboxMessage
    from readmodels.models import DeadLetter, DeadLetterStatus

    make_order()
    row = OutboxMessage.objects.first()
    letter = DeadLetter.objects.create(
        projector="order_summary", outbox_position=row.position, outbox_xid=row.xid,
        aggregate_type=row.aggregate_type, aggregate_id=row.aggregate_id, event_type="x",
        error="RuntimeError", status=DeadLetterStatus.DEAD,
    )
    page = admin_client_.get(path.format(row=row.pk, letter=letter.pk))
    assert page.status_code == 200
    assert b'name="_save"' not in page.content


def test_a_staff_member_without_the_permission_gets_an_admin_page_not_json(read_models):
    clerk = get_user_model().objects.create_user("clerk", password="x", is_staff=True)
    client = Client()
    client.force_login(clerk)
    response = client.get("/admin/readmodels/checkpoint/rebuild/order_summary/")
    assert response.status_code == 403
    assert _is_admin_html(response), response.content[:500]
    assert b"readmodels.rebuild_read_model" in response.content  # what is missing


def test_an_unknown_admin_page_is_an_admin_404(admin_client_):
    response = admin_client_.get("/admin/readmodels/checkpoint/rebuild/no-such-view/")
    assert response.status_code == 404
    assert _is_admin_html(response), response.content[:500]
