"""Where a newcomer lands: `/` names the four places, every /api/ path answers JSON,
and the browsable API has a login link and names a person would use."""

from __future__ import annotations

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_root_links_the_storefront_the_api_its_docs_and_the_admin(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    for href in ("/shop/", "/api/", "/api/docs/", "/admin/"):
        assert f'href="{href}"' in html, href


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/api/nothing-here", "/api/orders/not-a-uuid/summary", "/api/x/"])
def test_an_unknown_api_path_is_a_json_404(client, settings, debug, path):
    settings.DEBUG = debug  # with DEBUG on, Django's own 404 is an HTML debug page
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"
    assert client.post(path, {}).json()["error"]["code"] == "not_found"


def test_an_unknown_api_path_is_json_for_a_signed_in_browser_too(staff_user):
    # A session cookie and no CSRF token: Django's CSRF refusal would be an HTML page.
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    response = client.patch("/api/products/null,null", "{}", content_type="application/json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_missing_slash_still_redirects_where_a_page_has_one(client):
    response = client.get("/api/schema")
    assert response.status_code == 301 and response["Location"] == "/api/schema/"


def test_the_browsable_api_offers_a_login_and_names_its_pages(make_customer, staff_user):
    html = Client().get("/api/", HTTP_ACCEPT="text/html").content.decode()
    assert re.search(r"<a href='/api/session/login/\?next=/api/'>Log in</a>", html)

    client = Client()
    client.force_login(staff_user)
    html = client.get("/api/orders/search", HTTP_ACCEPT="text/html").content.decode()
    crumbs = re.findall(r'<li(?: class="active")?><a href="[^"]*">([^<]+)</a></li>',
                        html.split('<ul class="breadcrumb">', 1)[1].split("</ul>", 1)[0])
    assert crumbs == ["Shop API", "Orders", "Order search"]
