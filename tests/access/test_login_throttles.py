"""Every door to a password shares the login throttles: API, storefront, admin, browsable API.

Over HTTP against real uvicorn servers and Redis, as tests/access/test_throttles.py:
each server has low login rates and a throttle key prefix of its own, and addresses
other than 127.0.0.1 are X-Forwarded-For values read by a server told it sits behind one
proxy (NUM_PROXIES=1).
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model

from tests.support.forms import FormClient
from tests.support.http import call
from tests.support.servers import uvicorn_server

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-right-password-for-these-tests"
SIGN_IN_FORMS = ("/shop/login/", "/admin/login/", "/api/session/login/")


def form_login(port: int, path: str, username: str, password: str, address: str):
    """Sign in through an HTML form as a browser does. Returns (status, headers, body)."""
    return FormClient(port, address).submit(path, {"username": username, "password": password})


def api_login(port: int, username, password, address: str):
    return call(port, "POST", "/api/auth/token", {"username": username, "password": password},
                {"X-Forwarded-For": address})


def assert_form_throttled(answer):
    status, headers, body = answer
    assert status == 429, (status, body[:500])
    assert int(headers["retry-after"]) >= 1, headers
    assert headers["content-type"].startswith("text/html"), headers
    assert "no-store" in headers["cache-control"], headers
    assert "Too many sign-in attempts" in body, body[:500]


def assert_api_throttled(answer):
    assert answer.status == 429 and answer.code == "throttled", answer
    assert int(answer.headers["retry-after"]) >= 1, answer


def new_user(**fields):
    name = f"user-{uuid.uuid4().hex[:10]}"
    return get_user_model().objects.create_user(username=name, password=PASSWORD, **fields)


@pytest.fixture(scope="module")
def server(django_db_setup, elasticsearch_server):
    # DEBUG on: the sign-in pages' static files come from the app folders (collectstatic
    # has not run on a checkout, and with DEBUG off a page naming one is a 500).
    with uvicorn_server(THROTTLE_KEY_PREFIX=f"throttle-test-{uuid.uuid4().hex}", NUM_PROXIES="1",
                        DJANGO_DEBUG="true",
                        THROTTLE_RATE_LOGIN_ACCOUNT="3/min",
                        THROTTLE_RATE_LOGIN_ADDRESS="6/min") as port:
        yield port


def test_wrong_passwords_on_the_storefront_count_against_the_account_everywhere(server):
    """Three wrong passwords on /shop/login/, from three addresses: the account is at its
    limit for the API, the storefront, the admin and the browsable API alike, and the
    right password is refused on each."""
    staff = new_user(is_staff=True, is_superuser=True)
    for n in range(3):
        status, _, body = form_login(server, "/shop/login/", staff.username, "wrong",
                                     f"192.0.2.{n + 1}")
        assert status == 200 and "do not match" in body, (status, body[:500])
    assert_api_throttled(api_login(server, staff.username, PASSWORD, "192.0.2.20"))
    for n, path in enumerate(SIGN_IN_FORMS):
        assert_form_throttled(form_login(server, path, staff.username, PASSWORD,
                                         f"192.0.2.{30 + n}"))
    # Another account is not held up by this one's.
    other = new_user()
    status, headers, _ = form_login(server, "/shop/login/", other.username, PASSWORD,
                                    "192.0.2.40")
    assert status == 302, (status, headers)


def test_wrong_passwords_on_the_admin_count_against_the_address_for_the_api(server):
    """Password spraying through the admin's form: the address's counter is the API's."""
    for n in range(6):
        status, _, _ = form_login(server, "/admin/login/", f"nobody-{n}", "guess", "198.51.100.7")
        assert status == 200, status
    user = new_user()
    assert_api_throttled(api_login(server, user.username, PASSWORD, "198.51.100.7"))
    assert_form_throttled(form_login(server, "/shop/login/", user.username, PASSWORD,
                                     "198.51.100.7"))
    # The same account from another address still signs in.
    assert api_login(server, user.username, PASSWORD, "198.51.100.8").status == 200


def test_an_api_login_with_a_number_for_a_name_counts_against_that_account(server):
    """{"username": 4242424242} is the account "4242424242": its tries are counted, and the
    right password is refused once over the limit, written either way."""
    user = get_user_model().objects.create_user(username="4242424242", password=PASSWORD)
    for n in range(3):
        answer = api_login(server, 4242424242, "wrong", f"203.0.113.{n + 1}")
        assert answer.status == 401 and answer.code == "invalid_credentials", answer
    assert_api_throttled(api_login(server, 4242424242, PASSWORD, "203.0.113.10"))
    assert_api_throttled(api_login(server, " 4242424242 ", PASSWORD, "203.0.113.11"))
    assert_form_throttled(form_login(server, "/shop/login/", user.username, PASSWORD,
                                     "203.0.113.12"))


def test_a_name_written_differently_counts_as_the_same_account(server):
    """Case, surrounding spaces and compatibility characters (NFKC) name one account."""
    user = new_user()
    written = [user.username.upper(), f"  {user.username}\t",
               user.username.replace("u", "\uff55", 1)]  # FULLWIDTH SMALL U
    for n, name in enumerate(written):
        status, _, _ = form_login(server, "/shop/login/", name, "wrong", f"203.0.113.{50 + n}")
        assert status == 200, status
    assert_api_throttled(api_login(server, user.username, PASSWORD, "203.0.113.60"))


def test_the_current_password_of_a_password_change_is_counted_too(server):
    """A stolen token cannot guess its user's password through the password change
    faster than through a sign-in: it is the same account's counter."""
    user = new_user()
    token = api_login(server, user.username, PASSWORD, "203.0.113.70").json()["token"]

    def change(old):
        return call(server, "POST", "/api/auth/password",
                    {"old_password": old, "new_password": "a-new-long-passphrase-2026"},
                    {"Authorization": f"Token {token}", "X-Forwarded-For": "203.0.113.71"})

    for _ in range(2):
        assert change("wrong").status == 400
    assert_api_throttled(change(PASSWORD))
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_the_current_password_of_the_admins_password_change_is_counted_too(server):
    """Django's own form checks it on the user, past authenticate(); the admin's is
    counted on the account's login counter like a sign-in."""
    staff = new_user(is_staff=True)
    browser = FormClient(server, "203.0.113.80")
    status, _, _ = browser.submit("/admin/login/", {"username": staff.username,
                                                   "password": PASSWORD})
    assert status == 302, status

    def change(old):
        return browser.submit("/admin/password_change/", {
            "old_password": old, "new_password1": "a-new-long-passphrase-2026",
            "new_password2": "a-new-long-passphrase-2026",
        })

    for _ in range(2):
        status, _, body = change("wrong")
        assert status == 200 and "entered incorrectly" in body, (status, body[:500])
    assert_form_throttled(change(PASSWORD))
    staff.refresh_from_db()
    assert staff.check_password(PASSWORD)
