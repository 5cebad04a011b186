"""Shared fixtures: factories on the real database and API clients per role."""

from __future__ import annotations

import itertools

import pytest
from django.contrib.auth import get_user_model
from knox.models import AuthToken
from rest_framework.test import APIClient

from orders import commands
from tests.support.ports import free_port
from tests.support.servers import METRICS_TOKEN, OLD_KEY, WEBHOOK_SECRET, uvicorn_server
from tests.support.staff import shipped_group, shipped_groups

_seq = itertools.count(1)


def _n() -> int:
    return next(_seq)


@pytest.fixture
def make_product():
    def make(**overrides):
        n = _n()
        fields = {
            "sku": f"SKU-{n}",
            "name": f"Product {n}",
            "description": "A thing",
            "category": "things",
            "price_cents": 1000,
            "stock": 10,
        }
        fields.update(overrides)
        return commands.create_product(**fields).value

    return make


@pytest.fixture
def make_customer():
    def make(balance_cents: int = 0, **overrides):
        n = _n()
        fields = {"email": f"customer{n}@example.com", "name": f"Customer {n}"}
        fields.update(overrides)
        customer = commands.register_customer(**fields).value
        if balance_cents:
            customer = commands.top_up_balance(
                customer_id=customer.pk, amount_cents=balance_cents
            ).value
        return customer

    return make


@pytest.fixture
def make_order(make_customer, make_product):
    def make(customer=None, lines=None, **kwargs):
        customer = customer or make_customer(balance_cents=100_000)
        if lines is None:
            lines = [(make_product(), 1)]
        return commands.place_order(
            customer_id=customer.pk,
            lines=[commands.LineRequest(product_id=p.pk, quantity=q) for p, q in lines],
        ).value

    return make


def _client_for(user) -> APIClient:
    client = APIClient()
    _, token = AuthToken.objects.create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def staff_user():
    """A back-office user in every shipped group: all the powers staff tests exercise."""
    user = get_user_model().objects.create_user(
        username=f"staff{_n()}", password="x", is_staff=True
    )
    user.groups.add(*[shipped_group(name) for name in shipped_groups()])
    return user


@pytest.fixture
def staff_client(staff_user):
    return _client_for(staff_user)


@pytest.fixture
def client_for():
    return _client_for


@pytest.fixture
def anon_client():
    return APIClient()


@pytest.fixture(scope="session")
def elasticsearch_server():
    """Make sure the Elasticsearch API answers (start the dev server if it does not)."""
    from shop import devstack

    process = devstack.ensure_elasticsearch()
    yield
    from tests.support.readside import drop_read_models

    drop_read_models()
    devstack.stop_gently(process)


@pytest.fixture
def read_models(elasticsearch_server, transactional_db):
    """Empty views and indices for this test; projection runs on committed data."""
    from tests.support.readside import reset_read_models

    reset_read_models()
    yield


@pytest.fixture
def celery_worker_thread(read_models):
    """A real Celery worker (threads) consuming the test broker, in this process."""
    from celery.contrib.testing.worker import start_worker

    from shop.celery import app

    app.control.purge()
    with start_worker(
        app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=30
    ) as worker:
        yield worker


@pytest.fixture(scope="session", autouse=True)
def no_sessions_left_on_the_test_database(django_db_setup, django_db_blocker):
    """Close what tests leave connected, so the test database can be dropped.

    Celery worker threads keep their connections across tasks (CELERY_DB_REUSE_MAX, as
    in production), and a stopped in-process worker does not close them.
    """
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


# Real uvicorn servers on the test database, shared by the tests over HTTP (each starts
# on first use and stops at the end of the run).

@pytest.fixture(scope="session")
def server(django_db_setup, elasticsearch_server):
    """The shop as deployed: DEBUG off, metrics token, webhook secret, a rotated key."""
    with uvicorn_server(
        METRICS_TOKEN=METRICS_TOKEN,
        PAYMENT_WEBHOOK_SECRET=WEBHOOK_SECRET,
        DJANGO_SECRET_KEY_FALLBACKS=OLD_KEY,
    ) as port:
        yield port


@pytest.fixture(scope="session")
def bare_server(django_db_setup, elasticsearch_server):
    """DEBUG off with no metrics token nor webhook secret, and Elasticsearch unreachable."""
    with uvicorn_server(ELASTICSEARCH_URL=f"http://127.0.0.1:{free_port()}") as port:
        yield port


@pytest.fixture
def bare_staff():
    """Staff with no permissions at all."""
    return get_user_model().objects.create_user(username="bare-staff", password="x", is_staff=True)


@pytest.fixture
def superuser():
    return get_user_model().objects.create_superuser(username="root", password="x")
