"""Idempotency keys under real concurrency: a purge of expired keys racing a request that
renews one never lets the key's command run twice, and never turns the request into a 500.

The interleavings are made deterministic with real row locks (a transaction holding the
customer's row, waits observed in pg_stat_activity) and Django's execute_wrapper hook to
pause a request between two of its statements; PostgreSQL does the rest.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from orders import idempotency
from orders.models import Customer, IdempotencyKey
from tests.support.concurrency import DEADLINE_SECONDS, join_all
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _waiting_on_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def _in_thread(call, results: dict, name: str) -> threading.Thread:
    def run():
        try:
            results[name] = call()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            results[name] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def _expire(key: str) -> None:
    IdempotencyKey.objects.filter(key=key).update(expires_at=timezone.now() - timedelta(seconds=1))


def test_a_purge_racing_a_renewal_keeps_the_renewed_key_so_a_retry_replays(
    make_customer, client_for, staff_user
):
    customer = make_customer(balance_cents=0)
    client = client_for(staff_user)
    path = f"/api/customers/{customer.pk}/top-ups"
    assert client.post(path, {"amount_cents": 100}, format="json",
                       HTTP_IDEMPOTENCY_KEY="top-up").status_code == 200
    _expire("top-up")

    # Hold the customer's row so the renewing request stops inside its transaction with
    # the renewed key row locked; the purge then has chosen that key as expired and waits
    # for the row. Releasing the customer lets the request commit first.
    holder = psycopg.connect(**connection.get_connection_params())
    results: dict = {}
    try:
        with holder.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {Customer._meta.db_table} WHERE id = %s FOR UPDATE", [customer.pk]
            )
        renewing = _in_thread(
            lambda: client_for(staff_user).post(
                path, {"amount_cents": 100}, format="json", HTTP_IDEMPOTENCY_KEY="top-up"
            ),
            results, "renewing",
        )
        wait_until(lambda: _waiting_on_locks() == 1, DEADLINE_SECONDS,
                   message="the renewing request did not reach the customer's lock")
        purging = _in_thread(idempotency.purge_expired, results, "purge")
        wait_until(lambda: _waiting_on_locks() == 2, DEADLINE_SECONDS,
                   message="the purge did not reach the renewed key's lock")
        holder.commit()
        join_all([renewing, purging])
    finally:
        holder.close()

    renewed = results["renewing"]
    assert not isinstance(renewed, BaseException), renewed
    assert renewed.status_code == 200, renewed.content
    assert "Idempotent-Replayed" not in renewed

    retry = client.post(path, {"amount_cents": 100}, format="json", HTTP_IDEMPOTENCY_KEY="top-up")
    assert retry.status_code == 200
    assert retry.headers.get("Idempotent-Replayed") == "true", "the retry ran the command again"
    assert retry.json() == renewed.json()
    # Two top-ups: the original and the renewal after expiry; the retry ran nothing.
    assert Customer.objects.get(pk=customer.pk).balance_cents == 200
    assert results["purge"] == 0


def test_a_purge_between_the_claims_insert_and_its_lock_is_not_a_500(
    make_customer, client_for, staff_user
):
    customer = make_customer(balance_cents=0)
    client = client_for(staff_user)
    path = f"/api/customers/{customer.pk}/top-ups"
    assert client.post(path, {"amount_cents": 100}, format="json",
                       HTTP_IDEMPOTENCY_KEY="top-up").status_code == 200
    _expire("top-up")
    table = IdempotencyKey._meta.db_table
    purged: dict = {}

    def purge_before_the_lock(execute, sql, params, many, context):
        # The request's INSERT ... ON CONFLICT has just met the expired row; let a purge
        # delete and commit it before the request locks the row it met.
        if "FOR UPDATE" in sql and table in sql and "purge" not in purged:
            join_all([_in_thread(idempotency.purge_expired, purged, "purge")])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(purge_before_the_lock):
        response = client.post(
            path, {"amount_cents": 100}, format="json", HTTP_IDEMPOTENCY_KEY="top-up"
        )
    assert purged["purge"] == 1
    assert response.status_code == 200, response.content
    assert "Idempotent-Replayed" not in response
    retry = client.post(path, {"amount_cents": 100}, format="json", HTTP_IDEMPOTENCY_KEY="top-up")
    assert retry.headers.get("Idempotent-Replayed") == "true", "the retry ran the command again"
    assert Customer.objects.get(pk=customer.pk).balance_cents == 200


def test_purge_skips_a_key_renewed_after_it_was_chosen():
    """The purge's own statement re-checks the expiry, whatever its batch size: a key
    renewed (by a retry claiming it) after the purge chose it, while the purge waits for
    the renewal's row lock, is live again and stays."""
    now = timezone.now()
    for i in range(3):
        IdempotencyKey.objects.create(
            owner="user:1", key=f"old-{i}", fingerprint="x", expires_at=now - timedelta(hours=1)
        )
    IdempotencyKey.objects.create(
        owner="user:1", key="live", fingerprint="x", expires_at=now + timedelta(hours=1)
    )
    db = connection.settings_dict
    with psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
                         user=db["USER"], dbname=db["NAME"]) as renewal:
        # A request renews old-1 in place (claim() updates an expired key) and has not
        # committed yet: the purge, which has chosen old-1 as expired, waits for its lock.
        renewal.execute(
            "UPDATE orders_idempotencykey SET expires_at = now() + interval '1 day' "
            "WHERE key = 'old-1'"
        )
        results: dict = {}
        purging = _in_thread(lambda: idempotency.purge_expired(batch_size=10), results, "purge")
        wait_until(lambda: _waiting_on_locks() == 1, DEADLINE_SECONDS,
                   message="the purge did not reach the renewed key's lock")
        renewal.commit()
        join_all([purging])
    assert results["purge"] == 2, results
    assert sorted(IdempotencyKey.objects.values_list("key", flat=True)) == ["live", "old-1"]
