"""Consistency tokens: a commit position, signed, as the opaque X-Consistency-Token.

A token is signed so that a client cannot make one up: a forged "future" position
would hold every read that carries it for its whole wait. The salt keeps these
signatures apart from anything else signed with SECRET_KEY; Signer verifies in
constant time and also accepts signatures made with SECRET_KEY_FALLBACKS, so tokens
in flight survive a key rotation for as long as the old key stays a fallback.
"""

from __future__ import annotations

import base64
import binascii

from django.core import signing

from orders.outbox.positions import MAX_POSITION, Position


class InvalidToken(ValueError):
    pass


TOKEN_PREFIX = "ct2"
_TOKEN_SALT = "orders.outbox.consistency-token"


def _signer() -> signing.Signer:
    return signing.Signer(salt=_TOKEN_SALT, algorithm="sha256")


def encode_token(position: Position) -> str:
    """Return the opaque, signed X-Consistency-Token for a commit position."""
    signed = _signer().sign(f"{TOKEN_PREFIX}.{position.xid}.{position.position}")
    return base64.urlsafe_b64encode(signed.encode()).decode().rstrip("=")


def decode_token(token: str) -> Position:
    """Return the position of a token made by encode_token, or raise InvalidToken."""
    try:
        token = token.strip()
        padded = token + "=" * (-len(token) % 4)
        signed = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
        raw = _signer().unsign(signed)
        prefix, xid, position = raw.split(".")
        if prefix != TOKEN_PREFIX:
            raise ValueError(prefix)
        result = Position(int(xid), int(position))
    except (ValueError, UnicodeError, binascii.Error, signing.BadSignature):
        raise InvalidToken("not a consistency token issued by this shop") from None
    if not (0 <= result.xid < 2**63 and 0 <= result.position <= MAX_POSITION):
        raise InvalidToken("not a consistency token issued by this shop")
    return result
