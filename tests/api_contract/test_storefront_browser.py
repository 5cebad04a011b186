"""The storefront in a real headless Chromium against a real ASGI server process.

No Celery worker consumes this run's queue; the test's own projector loop stands in
for the worker and beat's sweep, and the test pauses it, so the lag window is as long
as the test wants: the page must show a write as *confirming* while the views lag, and
*confirmed* once the stream says they caught up.
"""

import re
import threading

import pytest
from django.db import connection
from selenium.webdriver.common.by import By

from orders import commands
from orders.models import Customer, Order
from readmodels import config, projectors
from readmodels.pipeline import progress
from tests.support.browser import chromium, screenshot, submit_and_wait_for, wait_for
from tests.support.readside import project_all
from tests.support.servers import uvicorn_server
from tests.support.waiting import wait_until

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


def status_line(browser, list_id: str, state: str):
    """The status line of a list (#search-status, #orders-status) once it is in `state`."""
    return wait_for(browser, f"#{list_id}-status[data-state={state}]")


def search_for(browser, text: str) -> None:
    field = browser.find_element(By.ID, "search-q")
    field.clear()
    field.send_keys(text)
    browser.find_element(By.CSS_SELECTOR, "#search-form button").click()


def products_shown(browser) -> list[str]:
    return [li.find_element(By.CSS_SELECTOR, ".name").text
            for li in browser.find_elements(By.CSS_SELECTOR, "#products li[data-product-id]")]


def test_search_pages_formats_money_and_says_when_nothing_matches_or_it_failed(
    shop_url, browser, read_models, projector, make_customer, make_product
):
    customer = make_customer(password="secret-password")
    make_product(name="Grand Piano", price_cents=123_456, stock=1)
    for n in range(24):
        make_product(name=f"Teacup {n:02d}", price_cents=350, stock=3)
    project_all()
    projector.resume()
    sign_in(browser, shop_url, customer.email)

    assert status_line(browser, "search", "ready").text == "Showing 20 of 25 products"
    first = browser.find_element(By.CSS_SELECTOR, "#products li[data-product-id]")
    assert first.find_element(By.CSS_SELECTOR, ".name").text == "Grand Piano"
    assert first.find_element(By.CSS_SELECTOR, ".price").text == "$1,234.56"
    assert first.find_element(By.CSS_SELECTOR, "button.buy").get_attribute("aria-label") == (
        "Buy one Grand Piano for $1,234.56"
    )
    assert status_line(browser, "orders", "empty").text.startswith("No orders yet")

    more = browser.find_element(By.ID, "more-products")
    assert more.is_displayed()
    more.click()
    wait_for(browser, "#products li[data-product-id]:nth-child(25)")
    assert status_line(browser, "search", "ready").text == "Showing 25 of 25 products"
    assert not more.is_displayed()

    search_for(browser, "zzzzqqq")
    assert status_line(browser, "search", "empty").text == "No products match “zzzzqqq”."
    assert products_shown(browser) == []
    screenshot(browser, "storefront-search-empty.png")

    search_for(browser, "x" * 201)  # longer than the API takes: a 400 with the field's reason
    error = status_line(browser, "search", "error")
    assert error.text.startswith("Search did not work: q:"), error.text
    assert products_shown(browser) == []
    screenshot(browser, "storefront-search-error.png")
    browser.find_element(By.ID, "search-q").clear()
    error.find_element(By.CSS_SELECTOR, "button.retry").click()
    assert status_line(browser, "search", "ready").text == "Showing 20 of 25 products"


@pytest.fixture(scope="module")
def lagging_shop_url(django_db_setup, elasticsearch_server):
    """The storefront's server, with the catalogue search's lag SLO at 1 s: past it, the
    search answers 503 with Retry-After, as it does when a view is far behind."""
    generous = {f"SLO_SECONDS_{name.upper()}": "600" for name in projectors.PROJECTORS}
    with uvicorn_server(
        DJANGO_DEBUG="true", READMODELS_READ_TIMEOUT_SECONDS="60",
        **{**generous, "SLO_SECONDS_PRODUCTS_SEARCH": "1"},
    ) as port:
        yield f"http://127.0.0.1:{port}"


def test_a_search_while_the_view_is_past_its_slo_says_catching_up_and_shows_no_old_results(
    lagging_shop_url, browser, read_models, projector, make_customer, make_product
):
    customer = make_customer(password="secret-password")
    make_product(name="Blue Teapot", price_cents=2_500)
    project_all()
    projector.resume()
    sign_in(browser, lagging_shop_url, customer.email)
    status_line(browser, "search", "ready")
    assert products_shown(browser) == ["Blue Teapot"]

    projector.pause()
    make_product(name="Red Teapot", price_cents=2_700)  # committed; the view lags behind it
    wait_until(lambda: progress.state("products_search").lag_ms > 1_500, timeout=30,
               message="the catalogue view did not fall behind")
    search_for(browser, "teapot")
    catching_up = status_line(browser, "search", "catching-up")
    assert "catching up" in catching_up.text and "retrying in 1 s" in catching_up.text
    # The results of the search before are gone: nothing on screen passes for current.
    assert products_shown(browser) == []
    screenshot(browser, "storefront-search-catching-up.png")

    projector.resume()
    assert status_line(browser, "search", "ready").text == "Showing 2 of 2 products"
    assert sorted(products_shown(browser)) == ["Blue Teapot", "Red Teapot"]


def test_orders_read_like_a_shop_and_a_short_balance_offers_to_add_funds(
    shop_url, browser, read_models, projector, make_customer, make_product
):
    customer = make_customer(balance_cents=1_000, password="secret-password")
    cup = make_product(name="Red Cup", price_cents=400, stock=10)
    make_product(name="Copper Kettle", price_cents=4_500, stock=5)
    cancelled = commands.place_order(
        customer_id=customer.pk, lines=[commands.LineRequest(product_id=cup.pk, quantity=1)]
    ).value
    commands.cancel_order(order_id=cancelled.pk)
    shipped = commands.place_order(
        customer_id=customer.pk, lines=[commands.LineRequest(product_id=cup.pk, quantity=2)]
    ).value
    commands.pay_order(order_id=shipped.pk)
    commands.ship_order(order_id=shipped.pk)  # the balance is $2.00 now
    project_all()
    projector.resume()
    sign_in(browser, shop_url, customer.email)

    assert status_line(browser, "orders", "ready").text == "2 of 2 orders"
    row = browser.find_element(By.CSS_SELECTOR, f"#orders li[data-order-id='{shipped.pk}']")
    assert row.find_element(By.CSS_SELECTOR, ".what").text == "Red Cup"
    assert row.find_element(By.CSS_SELECTOR, ".amount").text == "$8.00"
    assert re.fullmatch(r"[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d{2} [AP]M",
                        row.find_element(By.CSS_SELECTOR, ".when").text)
    for order, shown in ((shipped, "shipped"), (cancelled, "cancelled")):
        row = browser.find_element(By.CSS_SELECTOR, f"#orders li[data-order-id='{order.pk}']")
        assert row.find_element(By.CSS_SELECTOR, ".status").text == shown
        # A badge of confirmation belongs to writes in flight, not to settled history.
        assert not row.find_elements(By.CSS_SELECTOR, ".state")
        assert not row.find_elements(By.CSS_SELECTOR, "button.pay")

    kettle = next(li for li in browser.find_elements(By.CSS_SELECTOR, "#products li[data-product-id]")
                  if "Copper Kettle" in li.text)
    kettle.find_element(By.CSS_SELECTOR, "button.buy").click()
    placed = order_item(browser, "confirmed")
    placed.find_element(By.CSS_SELECTOR, "button.pay").click()
    alert = wait_for(browser, f"#orders li[data-order-id='{placed.get_attribute('data-order-id')}'] .alert")
    assert alert.get_attribute("role") == "alert"
    assert alert.text.startswith("Your balance doesn't cover this order yet.")
    assert "Your balance is $2.00; this order is $45.00." in alert.text
    assert "The customer's balance" not in browser.page_source  # not the API's words
    screenshot(browser, "storefront-pay-refused.png")

    browser.find_element(By.ID, "add-funds").click()
    wait_for(browser, "#timeline li[data-step='Add funds'] .view[data-view=customer_dashboard]:not(.behind)")
    wait_for(browser, "#balance-state[data-state=confirmed]")
    assert browser.find_element(By.ID, "balance").text == "$52.00"
    assert Customer.objects.get(pk=customer.pk).balance_cents == 5_200
    placed.find_element(By.CSS_SELECTOR, "button.pay").click()
    wait_for(browser, "#timeline li[data-step=Pay] .view[data-view=customer_dashboard]:not(.behind)")
    wait_for(browser, "#balance-state[data-state=confirmed]")
    assert browser.find_element(By.ID, "balance").text == "$7.00"
    assert not placed.find_elements(By.CSS_SELECTOR, ".alert")

    # An order placed, then the page reloaded while the views lag: the list says it is
    # catching up (the session makes its read wait for the order), then shows it.
    projector.pause()
    cup_row = next(li for li in browser.find_elements(By.CSS_SELECTOR, "#products li[data-product-id]")
                   if "Red Cup" in li.text)
    cup_row.find_element(By.CSS_SELECTOR, "button.buy").click()
    newest = order_item(browser, "confirming").get_attribute("data-order-id")
    browser.refresh()
    # Loading first (the read waits, bounded, for the order), then catching up.
    status_line(browser, "orders", "loading")
    status_line(browser, "orders", "catching-up")
    assert not browser.find_elements(By.CSS_SELECTOR, f"#orders li[data-order-id='{newest}']")
    screenshot(browser, "storefront-orders-catching-up.png")
    projector.resume()
    row = wait_for(browser, f"#orders li[data-order-id='{newest}']")
    assert row.find_element(By.CSS_SELECTOR, ".what").text == "Red Cup"
    assert status_line(browser, "orders", "ready").text == "4 of 4 orders"
    # The balance, read while the views lagged, is read again until it is up to date.
    wait_for(browser, "#balance-state[data-state=confirmed]")
    screenshot(browser, "storefront-orders.png")


def test_the_root_page_leads_to_the_storefront(shop_url, browser):
    browser.get(f"{shop_url}/")
    links = {a.text: a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#welcome a")}
    assert {"Storefront", "API", "API docs", "Admin"} <= set(links)
    screenshot(browser, "welcome.png")
    submit_and_wait_for(browser, browser.find_element(By.LINK_TEXT, "Storefront"), "#login-form")


def test_add_funds_exists_for_the_local_demo_only(client, make_customer):
    customer = make_customer(password="secret-password")
    client.login(username=customer.email, password="secret-password")
    response = client.post("/shop/add-funds", content_type="application/json")
    assert response.status_code == 404  # DEBUG off: no stand-in for the payment provider
    assert Customer.objects.get(pk=customer.pk).balance_cents == 0
    page = client.get("/shop/").content.decode()
    assert 'id="add-funds"' not in page and "payment provider" in page
    # Before the API has answered, each list says it is loading (not an empty list).
    assert 'id="search-status" class="list-status" data-state="loading"' in page
    assert 'id="orders-status" class="list-status" data-state="loading"' in page


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
