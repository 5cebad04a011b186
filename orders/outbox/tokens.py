"""Consistency tokens: a commit position and its cluster, encrypted, as X-Consistency-Token.

A token is authenticated so that a client cannot make one up (a forged "future"
position would hold every read that carries it for its whole wait), and encrypted so
that it is opaque: two tokens of one customer must not tell how many changes the whole
shop made in between. AES-GCM with a key derived from SECRET_KEY; tokens made with a key
in SECRET_KEY_FALLBACKS are still accepted, so tokens in flight survive a key rotation
for as long as the old key stays a fallback. Signed (not encrypted) tokens of the
previous format (`ct2`) are still accepted during an upgrade; they name no cluster.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import math
import os
import re
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core import signing

from orders.outbox.positions import MAX_POSITION, Position


class InvalidToken(ValueError):
    pass


TOKEN_PREFIX = "ct3"
_KEY_CONTEXT = b"orders.outbox.consistency-token.v3"
# cluster (the system identifier, an unsigned 64-bit number), xid, position
_PAYLOAD = struct.Struct(">QQQ")
_NONCE_BYTES = 12

# The previous format: a signed, readable token.
_LEGACY_PREFIX = "ct2"
_LEGACY_SALT = "orders.outbox.consistency-token"


def _base64url(size: int) -> int:
    """Characters of `size` bytes in base64url without padding."""
    return math.ceil(size * 4 / 3)


_B64URL = "[A-Za-z0-9_-]"
# What read_token accepts, as the OpenAPI schema states it (no whitespace, no padding):
# "ct3" and the base64url of nonce, payload and GCM tag; or a legacy token, the
# base64url of "ct2.<xid>.<position>:<43 characters of HMAC-SHA256>", whose first five
# characters are those of "ct2." (Y3QyL), from "ct2.0.0:" to 19-digit numbers.
_SEALED_CHARS = _base64url(_NONCE_BYTES + _PAYLOAD.size + 16)
_LEGACY_SIGNED_BYTES = (len("ct2.0.0:") + 43, len("ct2..:") + 19 + 19 + 43)
TOKEN_PATTERN = (
    f"^(?:{TOKEN_PREFIX}{_B64URL}{{{_SEALED_CHARS}}}"
    f"|Y3QyL{_B64URL}{{{_base64url(_LEGACY_SIGNED_BYTES[0]) - 5},"
    f"{_base64url(_LEGACY_SIGNED_BYTES[1]) - 5}}})$"
)
_TOKEN = re.compile(TOKEN_PATTERN)


@dataclass(frozen=True)
class TokenContent:
    position: Position
    cluster: str | None  # None: a token of the previous format


@functools.lru_cache(maxsize=8)
def _cipher(secret: str) -> AESGCM:
    return AESGCM(hashlib.sha256(_KEY_CONTEXT + secret.encode()).digest())


def _secrets() -> list[str]:
    return [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]


def encode_token(position: Position, cluster: str | None = None) -> str:
    """Return the opaque X-Consistency-Token of a commit position in this database's cluster."""
    if cluster is None:
        from orders.outbox.cluster import cluster_id

        cluster = cluster_id()
    try:
        payload = _PAYLOAD.pack(int(cluster), position.xid, position.position)
    except struct.error:
        raise InvalidToken(f"no token for a position out of range: {position}") from None
    nonce = os.urandom(_NONCE_BYTES)
    sealed = _cipher(settings.SECRET_KEY).encrypt(nonce, payload, _KEY_CONTEXT)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def read_token(token: str) -> TokenContent:
    """Return what a token made by this shop holds, or raise InvalidToken."""
    # Before any decoding: base64's decoder skips characters outside its alphabet, and
    # the schema promises that a token is exactly TOKEN_PATTERN.
    if not _TOKEN.fullmatch(token):
        raise InvalidToken("not a consistency token issued by this shop")
    if token.startswith(TOKEN_PREFIX):
        content = _open(token[len(TOKEN_PREFIX):])
    else:
        content = TokenContent(_legacy(token), None)
    position = content.position
    if not (0 <= position.xid < 2**63 and 0 <= position.position <= MAX_POSITION):
        raise InvalidToken("not a consistency token issued by this shop")
    return content


def decode_token(token: str) -> Position:
    """Return the position of a token made by encode_token, or raise InvalidToken."""
    return read_token(token).position


def _open(body: str) -> TokenContent:
    try:
        raw = base64.urlsafe_b64decode((body + "=" * (-len(body) % 4)).encode("ascii"))
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidToken("not a consistency token issued by this shop") from None
    nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
    for secret in _secrets():
        try:
            payload = _cipher(secret).decrypt(nonce, sealed, _KEY_CONTEXT)
        except (InvalidTag, ValueError):
            continue
        if len(payload) != _PAYLOAD.size:
            break
        cluster, xid, position = _PAYLOAD.unpack(payload)
        return TokenContent(Position(xid, position), str(cluster))
    raise InvalidToken("not a consistency token issued by this shop")


def _legacy(token: str) -> Position:
    try:
        padded = token + "=" * (-len(token) % 4)
        signed = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
        raw = signing.Signer(salt=_LEGACY_SALT, algorithm="sha256").unsign(signed)
        prefix, xid, position = raw.split(".")
        if prefix != _LEGACY_PREFIX:
            raise ValueError(prefix)
        return Position(int(xid), int(position))
    except (ValueError, UnicodeError, binascii.Error, signing.BadSignature):
        raise InvalidToken("not a consistency token issued by this shop") from None
