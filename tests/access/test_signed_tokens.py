"""Consistency tokens are encrypted and authenticated: a forged one is a 400 at once, issued
ones survive a key rotation, and they tell a client nothing of the shop's positions."""

from __future__ import annotations

import base64

import pytest
from django.test import override_settings

from orders.outbox import Position, encode_token
from tests.support.http import auth, call
from tests.support.readside import project_all
from tests.support.servers import OLD_KEY

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_forged_token_is_refused_at_once_on_public_search(server, read_models):
    """A made-up far-future position would hold the read for its whole wait."""
    project_all()  # the view is up to date: only the token could make it wait
    unsigned = base64.urlsafe_b64encode(f"ct1.{2**62}.0".encode()).decode().rstrip("=")
    with override_settings(SECRET_KEY="a-key-an-attacker-guessed"):
        wrong_key = encode_token(Position(2**62, 0))
    for forged in (unsigned, wrong_key):
        answer = call(server, "GET", "/api/products/search?max_wait_ms=2000",
                      headers={"X-Consistency-Token": forged})
        assert answer.status == 400, answer
        assert answer.code == "invalid_consistency_token"


def test_issued_tokens_are_honoured_and_survive_a_key_rotation(server, read_models, staff_user):
    created = call(server, "POST", "/api/products", {
        "sku": "SIGNED-1", "name": "Signed", "category": "c", "price_cents": 100, "stock": 1,
    }, auth(staff_user))
    assert created.status == 201, created
    project_all()
    issued = created.headers["x-consistency-token"]
    # A token signed before the key was rotated: the old key is a fallback now.
    with override_settings(SECRET_KEY=OLD_KEY):
        from_before = encode_token(Position(0, 0))
    for token in (issued, from_before):
        answer = call(server, "GET", "/api/products/search?q=SIGNED-1",
                      headers={"X-Consistency-Token": token})
        assert answer.status == 200, answer
        assert answer.headers["x-stale"] == "false"
        assert [r["sku"] for r in answer.json()["results"]] == ["SIGNED-1"]


def test_tokens_are_opaque_and_cannot_be_altered():
    """Two tokens of one customer must not tell how many changes the whole shop made in
    between: the position is encrypted, not only signed."""
    from orders.outbox import InvalidToken, decode_token, read_token

    position = Position(734_563_111, 9_876_543_210)
    token, again = encode_token(position), encode_token(position)
    assert token != again  # a fresh nonce each time: equal positions look unrelated
    raw = base64.urlsafe_b64decode(token[3:] + "=" * (-len(token[3:]) % 4))
    for number in (b"734563111", b"9876543210", (734_563_111).to_bytes(8, "big"),
                   (9_876_543_210).to_bytes(8, "big")):
        assert number not in raw
    assert decode_token(token) == position
    assert read_token(token).cluster is not None
    tampered = bytearray(raw)
    tampered[-1] ^= 1
    with pytest.raises(InvalidToken):
        decode_token("ct3" + base64.urlsafe_b64encode(bytes(tampered)).decode().rstrip("="))


def test_tokens_of_the_previous_signed_format_are_still_accepted():
    """Tokens in flight when the format changed (clients keep them for a while)."""
    from django.core import signing

    from orders.outbox import decode_token, read_token

    signed = signing.Signer(salt="orders.outbox.consistency-token", algorithm="sha256").sign(
        "ct2.41.42")
    legacy = base64.urlsafe_b64encode(signed.encode()).decode().rstrip("=")
    assert decode_token(legacy) == Position(41, 42)
    assert read_token(legacy).cluster is None
