"""Browser sessions read by fixed statements (shop.web.sessions) keep Django's promises.

The session row and the user are read without the ORM; what a session may do must not
change: an expired or deleted session is no session, a deactivated user or one whose
password changed is signed out, and the user loaded is the whole row.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from shop.web.sessions import SessionStore, user_by_id

pytestmark = pytest.mark.django_db


def _signed_in(user) -> Client:
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    return client


@pytest.fixture
def shopper():
    return get_user_model().objects.create_user(
        username="browser@example.com", email="browser@example.com", password="x",
        first_name="Ann",
    )


def test_a_signed_in_browser_is_its_user(shopper):
    client = _signed_in(shopper)
    assert client.get("/api/me").status_code == 200
    loaded = user_by_id(shopper.pk)
    assert loaded == shopper
    assert (loaded.username, loaded.email, loaded.first_name, loaded.password) == (
        shopper.username, shopper.email, shopper.first_name, shopper.password)
    assert loaded._state.adding is False and loaded._state.db == "default"
    assert user_by_id(shopper.pk + 1000) is None


def test_an_expired_or_deleted_session_is_no_session(shopper):
    client = _signed_in(shopper)
    key = client.cookies["sessionid"].value
    assert SessionStore(key).load()  # the row is read and decoded
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    assert client.get("/api/me").status_code in (401, 403)
    expired = SessionStore(key)
    assert expired.load() == {} and expired.session_key is None

    client = _signed_in(shopper)
    Session.objects.filter(session_key=client.cookies["sessionid"].value).delete()
    assert client.get("/api/me").status_code in (401, 403)


def test_a_deactivated_user_or_a_changed_password_signs_the_browser_out(shopper):
    client = _signed_in(shopper)
    get_user_model().objects.filter(pk=shopper.pk).update(is_active=False)
    assert client.get("/api/me").status_code in (401, 403)

    get_user_model().objects.filter(pk=shopper.pk).update(is_active=True)
    client = _signed_in(shopper)
    assert client.get("/api/me").status_code == 200
    shopper.set_password("another password 42")
    shopper.save()
    assert client.get("/api/me").status_code in (401, 403)
