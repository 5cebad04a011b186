"""Search pages stay inside what Elasticsearch serves: from + size may not pass the index's
max_result_window (10,000), so a deeper page is a clear 400, never a 500."""

from __future__ import annotations

import pytest

from tests.support.readside import project_all

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def views_up(read_models):
    project_all()


@pytest.mark.parametrize(
    ("path", "page", "page_size", "code"),
    [
        ("/api/products/search?q=lamp", 101, 100, "result_window_exceeded"),
        ("/api/products/search", 500, 100, "result_window_exceeded"),
        ("/api/products/search", 10_001, 1, "max_value"),
        ("/api/orders/search?q=lamp", 101, 100, "result_window_exceeded"),
        ("/api/orders/search?q=lamp", 251, 40, "result_window_exceeded"),
    ],
)
def test_a_page_past_the_result_window_is_a_400(
    views_up, staff_client, path, page, page_size, code
):
    sep = "&" if "?" in path else "?"
    response = staff_client.get(f"{path}{sep}page={page}&page_size={page_size}")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["fields"]["page"][0]["code"] == code


@pytest.mark.parametrize("path", ["/api/products/search?q=lamp", "/api/orders/search?q=lamp"])
def test_the_last_page_inside_the_window_is_served(views_up, staff_client, path):
    response = staff_client.get(f"{path}&page=100&page_size=100")
    assert response.status_code == 200, response.content
    assert response.json()["results"] == []
