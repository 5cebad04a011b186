"""A password change revokes the user's API tokens, whichever way it is made; a new
password follows the shop's rules wherever a person sets one.

Over HTTP against a real uvicorn server: the API's password change, the admin's form
for another user's password and the admin's own password change form.
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import MD5PasswordHasher
from knox.models import AuthToken

from tests.support.forms import FormClient
from tests.support.http import call
from tests.support.servers import uvicorn_server

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-right-password-for-these-tests"
NEW_PASSWORD = "another-long-passphrase-2026"


def _server():
    # DEBUG on: the admin's pages name static files, which only collectstatic would
    # hash for a server with DEBUG off.
    return uvicorn_server(THROTTLE_KEY_PREFIX=f"throttle-test-{uuid.uuid4().hex}",
                          DJANGO_DEBUG="true")


@pytest.fixture(scope="module")
def server(django_db_setup, elasticsearch_server):
    with _server() as port:
        yield port


@pytest.fixture
def admin_server(django_db_setup, elasticsearch_server):
    """A server of the test's own for a change the admin logs: the log names a content
    type by id, and a server kept across tests would remember ids from before the
    previous test's flush."""
    with _server() as port:
        yield port


def new_user(**fields):
    name = f"user-{uuid.uuid4().hex[:10]}"
    return get_user_model().objects.create_user(
        username=name, email=f"{name}@example.com", password=PASSWORD, **fields
    )


def api_token(port, username, password=PASSWORD) -> str:
    answer = call(port, "POST", "/api/auth/token", {"username": username, "password": password})
    assert answer.status == 200, answer
    return answer.json()["token"]


def me(port, token):
    return call(port, "GET", "/api/me", headers={"Authorization": f"Token {token}"})


def change_password(port, token, old, new):
    return call(port, "POST", "/api/auth/password", {"old_password": old, "new_password": new},
                {"Authorization": f"Token {token}"})


def admin_signed_in(port) -> FormClient:
    admin = new_user(is_staff=True, is_superuser=True)
    browser = FormClient(port)
    status, headers, _ = browser.submit("/admin/login/", {"username": admin.username,
                                                         "password": PASSWORD})
    assert status == 302, (status, headers)
    return browser


# --- item 6: a password change revokes the API tokens -------------------------------


def test_changing_the_password_through_the_api_revokes_every_token(server):
    user = new_user()
    used, other = api_token(server, user.username), api_token(server, user.username)
    assert me(server, other).status == 200
    assert change_password(server, used, PASSWORD, NEW_PASSWORD).status == 204
    for token in (used, other):
        refused = me(server, token)
        assert refused.status == 401 and refused.code == "authentication_failed", refused
    assert not AuthToken.objects.filter(user=user).exists()
    # The new password signs in, the old one no longer does.
    assert me(server, api_token(server, user.username, NEW_PASSWORD)).status == 200
    old = call(server, "POST", "/api/auth/token", {"username": user.username, "password": PASSWORD})
    assert old.status == 401, old


def test_an_admin_setting_a_users_password_revokes_that_users_tokens(admin_server):
    server = admin_server
    user, bystander = new_user(), new_user()
    token, kept = api_token(server, user.username), api_token(server, bystander.username)
    browser = admin_signed_in(server)
    status, headers, body = browser.submit(f"/admin/auth/user/{user.pk}/password/", {
        "usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD,
    })
    assert status == 302, (status, body[:1000])
    assert me(server, token).status == 401
    assert me(server, kept).status == 200  # another user's tokens are not touched


def test_the_admins_own_password_change_revokes_their_tokens(server):
    admin = new_user(is_staff=True)
    token = api_token(server, admin.username)
    browser = FormClient(server)
    assert browser.submit("/admin/login/", {"username": admin.username,
                                            "password": PASSWORD})[0] == 302
    status, _, body = browser.submit("/admin/password_change/", {
        "old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD,
    })
    assert status == 302, (status, body[:1000])
    assert me(server, token).status == 401


def test_a_rehash_at_sign_in_is_not_a_password_change(server):
    """Django stores the same password anew at sign-in when its hasher's settings moved
    on (here: a salt too short for today's hasher); the user's tokens stay."""
    user = new_user()
    user.password = MD5PasswordHasher().encode(PASSWORD, "ab")
    user.save()
    token = AuthToken.objects.create(user=user)[1]
    before = user.password
    api_token(server, user.username)  # signs in: the hash is upgraded
    user.refresh_from_db()
    assert user.password != before and user.check_password(PASSWORD)
    assert me(server, token).status == 200


def test_a_wrong_current_password_changes_nothing(server):
    user = new_user()
    token = api_token(server, user.username)
    refused = change_password(server, token, "not-the-password", NEW_PASSWORD)
    assert refused.status == 400 and refused.code == "invalid", refused
    assert refused.json()["error"]["fields"]["old_password"][0]["code"] == "wrong_password"
    assert me(server, token).status == 200
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


# --- item 8: the password rules -----------------------------------------------------


@pytest.mark.parametrize("weak,codes", [
    ("12345678", {"password_entirely_numeric", "password_too_common"}),
    ("password", {"password_too_common"}),
    ("EMAIL", {"password_too_similar"}),
    ("x7#kq", {"password_too_short"}),
])
def test_the_api_refuses_a_weak_new_password_naming_each_rule(server, weak, codes):
    user = new_user()
    weak = user.email if weak == "EMAIL" else weak
    token = api_token(server, user.username)
    refused = change_password(server, token, PASSWORD, weak)
    assert refused.status == 400 and refused.code == "invalid", refused
    errors = refused.json()["error"]["fields"]["new_password"]
    assert codes <= {e["code"] for e in errors}, errors
    assert all(e["message"] for e in errors), errors
    # Nothing changed: the old password and the token still work.
    assert me(server, token).status == 200
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


@pytest.mark.parametrize("weak", ["12345678", "password", "EMAIL"])
def test_the_admin_refuses_a_weak_password(admin_server, weak):
    server = admin_server
    user = new_user()
    weak = user.email if weak == "EMAIL" else weak
    status, _, body = admin_signed_in(server).submit(f"/admin/auth/user/{user.pk}/password/", {
        "usable_password": "true", "password1": weak, "password2": weak,
    })
    assert status == 200 and "errorlist" in body, (status, body[:1000])
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
