"""Only staff with the top-up permission, or the payment provider's signed callback, credit a balance."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.contrib.auth.models import Permission

from orders import payments
from orders.models import Customer, OutboxMessage, PaymentEvent
from tests.support.http import Answer, auth, call, too_large_body
from tests.support.servers import WEBHOOK_SECRET

pytestmark = pytest.mark.django_db(transaction=True)


def balance(customer) -> int:
    return Customer.objects.get(pk=customer.pk).balance_cents


def test_top_up_permission_matrix(server, make_customer, staff_user, bare_staff, superuser):
    ann, bob = make_customer(balance_cents=1000), make_customer(balance_cents=1000)
    top_up_of = lambda customer: f"/api/customers/{customer.pk}/top-ups"  # noqa: E731
    refused = [
        ("anonymous", {}, ann, 401, "not_authenticated"),
        ("customer, own balance", auth(ann.user), ann, 403, "permission_required"),
        ("customer, another's", auth(ann.user), bob, 403, "permission_required"),
        ("staff without the permission", auth(bare_staff), ann, 403, "permission_required"),
    ]
    for who, headers, customer, status, code in refused:
        answer = call(server, "POST", top_up_of(customer), {"amount_cents": 10**12}, headers)
        assert (answer.status, answer.code) == (status, code), who
    assert balance(ann) == balance(bob) == 1000

    for who, user in [("staff with orders.top_up_balance", staff_user), ("superuser", superuser)]:
        answer = call(server, "POST", top_up_of(bob), {"amount_cents": 500}, auth(user))
        assert answer.status == 200, (who, answer)
    assert balance(bob) == 2000

    # The permission is all it takes, given through a group as in the back office.
    from django.contrib.auth.models import Group

    group = Group.objects.create(name="payments desk")
    group.permissions.add(Permission.objects.get(codename="top_up_balance"))
    bare_staff.groups.add(group)
    answer = call(server, "POST", top_up_of(ann), {"amount_cents": 1}, auth(bare_staff))
    assert answer.status == 200, answer


def _deliver(port, event: dict, *, secret=WEBHOOK_SECRET, timestamp=None, body=None, header=None,
             skew=0):
    """`skew`: seconds the signature's timestamp is off from now, taken at delivery."""
    raw = body if body is not None else json.dumps(event).encode()
    if header is None:
        stamp = int(time.time()) + skew if timestamp is None else timestamp
        header = payments.sign(body=raw, timestamp=stamp, secret=secret)
    return call(port, "POST", "/api/payments/webhook", raw,
                {"Content-Type": "application/json", payments.SIGNATURE_HEADER: header})


def test_a_signed_payment_event_credits_the_balance_once(server, make_customer):
    customer = make_customer(balance_cents=100)
    event = {"event_id": "evt_1", "customer_id": customer.pk, "amount_cents": 2500}
    raw = json.dumps(event).encode()
    header = payments.sign(body=raw, timestamp=int(time.time()), secret=WEBHOOK_SECRET)

    first = _deliver(server, event, body=raw, header=header)
    assert first.status == 200, first
    assert first.json() == {"event_id": "evt_1", "status": "credited"}
    assert first.headers["x-consistency-token"]
    assert balance(customer) == 2600
    row = OutboxMessage.objects.filter(
        aggregate_type="customer", aggregate_id=str(customer.pk), event_type="BalanceToppedUp"
    ).latest("position")
    assert row.payload == {"balance_cents": 2600, "amount_cents": 2500, "payment_event_id": "evt_1"}

    # The same delivery replayed (same bytes, same signature), and the provider's own
    # redelivery (signed anew): each answered 200, neither credits again.
    assert _deliver(server, event, body=raw, header=header).json()["status"] == "already_credited"
    assert _deliver(server, event).json()["status"] == "already_credited"
    assert balance(customer) == 2600
    assert PaymentEvent.objects.filter(event_id="evt_1").count() == 1


def test_concurrent_deliveries_of_one_event_credit_once(server, make_customer):
    customer = make_customer()
    event = {"event_id": "evt_race", "customer_id": customer.pk, "amount_cents": 700}
    answers: list[Answer] = []
    threads = [
        threading.Thread(target=lambda: answers.append(_deliver(server, event))) for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.json()["status"] for a in answers) == ["already_credited"] * 5 + ["credited"]
    assert balance(customer) == 700


def test_payment_events_without_a_valid_fresh_signature_credit_nothing(server, make_customer):
    customer = make_customer(balance_cents=100)
    event = {"event_id": "evt_bad", "customer_id": customer.pk, "amount_cents": 10**12}
    raw = json.dumps(event).encode()
    now = int(time.time())
    tampered = json.dumps({**event, "amount_cents": 1}).encode()
    cases = [
        ("no signature", dict(header=""), "invalid_signature"),
        ("garbage", dict(header="v1=zz,t=x"), "invalid_signature"),
        ("wrong secret", dict(secret="guessed"), "invalid_signature"),
        ("signature of another body",
         dict(body=raw, header=payments.sign(body=tampered, timestamp=now, secret=WEBHOOK_SECRET)),
         "invalid_signature"),
        ("timestamp changed after signing",
         dict(body=raw, header=payments.sign(body=raw, timestamp=now, secret=WEBHOOK_SECRET)
              .replace(f"t={now}", f"t={now + 1}")),
         "invalid_signature"),
        # Past the 300 s tolerance by half a minute, counted at delivery: a test `now`
        # taken earlier made "the future" fresh once the first cases took over a second.
        ("stale", dict(skew=-330), "stale_signature"),
        ("from the future", dict(skew=330), "stale_signature"),
    ]
    for what, kwargs, code in cases:
        answer = _deliver(server, event, **kwargs)
        assert (answer.status, answer.code) == (401, code), what
    assert balance(customer) == 100
    assert not PaymentEvent.objects.exists()

    # A well-signed event that is not a valid credit is refused, and leaves no record
    # that would swallow its corrected redelivery.
    for wrong in ({**event, "amount_cents": 0}, {**event, "customer_id": 999999999}):
        answer = _deliver(server, wrong)
        assert answer.status in (400, 404), answer
    assert not PaymentEvent.objects.exists()
    ok = _deliver(server, {**event, "amount_cents": 900})
    assert ok.json()["status"] == "credited"
    assert balance(customer) == 1000


def test_the_webhook_refuses_everything_when_no_secret_is_set(bare_server, make_customer):
    customer = make_customer()
    event = {"event_id": "evt_x", "customer_id": customer.pk, "amount_cents": 100}
    for secret in ("", "anything"):
        answer = _deliver(bare_server, event, secret=secret)
        assert answer.status == 503, answer
        assert answer.code == "payments_not_configured"
    assert balance(customer) == 0


def test_an_oversized_callback_is_a_json_413(server, settings):
    answer = call(server, "POST", "/api/payments/webhook", too_large_body(settings),
                  {"Content-Type": "application/json", payments.SIGNATURE_HEADER: "t=1,v1=00"})
    assert answer.status == 413, answer
    assert answer.code == "request_too_large"
