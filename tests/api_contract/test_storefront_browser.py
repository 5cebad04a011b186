"""The storefront in a real headless Chromium against a real ASGI server process.

No Celery worker consumes this run's queue; the test's own projector loop stands in
for the worker and beat's sweep, and the test pauses it, so the lag window is as long
as the test wants: the page must show a write as *confirming* while the views lag, and
*confirmed* once the stream says they caught up.
"""

import threading

import pytest
from django.db import connection
from selenium.webdriver.common.by import By

from orders.models import Customer, Order
from readmodels import config, projectors
from tests.support.browser import chromium, screenshot, submit_and_wait_for, wait_for
from tests.support.readside import project_all
from tests.support.servers import uvicorn_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def shop_url(django_db_setup, elasticsearch_server):
    # DEBUG on: WhiteNoise then serves the storefront's modules from the app folder
    # (collectstatic has not run on a checkout). The
    # machine's Elasticsearch may be slow under other runs' load: this test is about
    # what the page shows, not about the lag SLO, so both bounds are generous.
    generous = {f"SLO_SECONDS_{name.upper()}": "600" for name in projectors.PROJECTORS}
    with uvicorn_server(
        DJANGO_DEBUG="true", READMODELS_READ_TIMEOUT_SECONDS="60", **generous
    ) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def browser():
    with chromium() as driver:
        yield driver


class ProjectorLoop:
    """Project every sweep interval, as a worker and beat do, while not paused."""

    def __init__(self):
        self.running = threading.Event()
        self.stopped = threading.Event()
        self.passing = threading.Lock()  # held during a projection pass
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.error: BaseException | None = None

    def _loop(self):
        try:
            while not self.stopped.is_set():
                with self.passing:
                    if self.running.is_set():
                        project_all()
                self.stopped.wait(config.sweep_interval())
        except BaseException as exc:  # noqa: BLE001 - reported by the fixture, not lost
            self.error = exc
        finally:
            connection.close()

    def pause(self):
        """Return once no pass is under way; none starts until resume()."""
        self.running.clear()
        with self.passing:
            pass

    def resume(self):
        self.running.set()


@pytest.fixture
def projector():
    loop = ProjectorLoop()
    loop.thread.start()
    try:
        yield loop
    finally:
        loop.stopped.set()
        loop.thread.join(120)
        assert loop.error is None, loop.error


def sign_in(browser, shop_url, email):
    browser.get(f"{shop_url}/shop/")
    field = wait_for(browser, "#login-form input[name=username]")
    field.clear()
    field.send_keys(email)
    browser.find_element(By.NAME, "password").send_keys("secret-password")
    submit_and_wait_for(
        browser, browser.find_element(By.CSS_SELECTOR, "#login-form button"),
        "#storefront[data-ready=true]",
    )


def order_item(browser, state):
    return wait_for(browser, f"#orders li[data-order-id]:not([data-order-id=''])[data-state={state}]")


def test_an_order_shows_as_confirming_until_the_views_catch_up_then_confirmed(
    shop_url, browser, read_models, projector, make_customer, make_product
):
    customer = make_customer(balance_cents=10_000, password="secret-password")
    make_product(name="Blue Teapot", price_cents=2_500, stock=5)
    project_all()  # every view has reported before the page first reads
    projector.resume()
    sign_in(browser, shop_url, customer.email)
    wait_for(browser, "#balance-state[data-state=confirmed]")
    assert browser.find_element(By.ID, "balance").text == "$100.00"
    buy = wait_for(browser, "#products li[data-product-id] button.buy")

    projector.pause()
    buy.click()
    pending = order_item(browser, "confirming")
    order = Order.objects.get(customer=customer)
    assert pending.get_attribute("data-order-id") == str(order.pk)
    step = wait_for(browser, "#timeline li[data-step='Place order']")
    assert "command" in step.text and "catching up" in step.text
    screenshot(browser, "storefront-confirming.png")

    projector.resume()  # the stream tells the page when the views include the order
    confirmed = order_item(browser, "confirmed")
    assert confirmed.get_attribute("data-order-id") == str(order.pk)
    for view in ("order_summary", "orders_search"):
        caught_up = wait_for(
            browser, f"#timeline li[data-step='Place order'] .view[data-view={view}]:not(.behind)"
        )
        assert caught_up.text.startswith(f"{view} +")

    projector.pause()
    confirmed.find_element(By.CSS_SELECTOR, "button.pay").click()
    wait_for(browser, "#balance-state[data-state=confirming]")
    paid_item = order_item(browser, "confirming")
    assert paid_item.get_attribute("data-order-id") == str(order.pk)
    # The balance the payment leaves is shown at once, before any view has it.
    assert browser.find_element(By.ID, "balance").text == "$75.00"
    assert Customer.objects.get(pk=customer.pk).balance_cents == 7_500

    projector.resume()
    wait_for(browser, "#balance-state[data-state=confirmed]")
    assert browser.find_element(By.ID, "balance").get_attribute("data-cents") == "7500"
    order_item(browser, "confirmed")
    wait_for(browser, "#timeline li[data-step=Pay] .view[data-view=customer_dashboard]:not(.behind)")
    screenshot(browser, "storefront-confirmed.png")


def test_signing_in_as_someone_who_is_not_a_customer_says_so(client, django_user_model):
    django_user_model.objects.create_user("clerk", password="secret-password")
    client.login(username="clerk", password="secret-password")
    response = client.get("/shop/")
    assert response.status_code == 200
    assert b'id="not-a-customer"' in response.content
    assert b"storefront.js" not in response.content


def test_the_storefront_asks_a_visitor_to_sign_in(client):
    response = client.get("/shop/")
    assert response.status_code == 302 and response["Location"].startswith("/shop/login/")
    page = client.get(response["Location"])
    assert b"customer0@example.com" in page.content
