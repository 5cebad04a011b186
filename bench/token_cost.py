"""What a consistency token costs per request: encoding one (a command's answer) and
reading one (a projected read that sends it), encrypted (ct3) against the previous signed
format (ct2), in microseconds, in this process.

    DJANGO_DEBUG=true .venv/bin/python bench/token_cost.py
"""

from __future__ import annotations

import base64
import os
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")

import django  # noqa: E402

django.setup()

from django.core import signing  # noqa: E402

from orders.outbox import Position, decode_token, encode_token  # noqa: E402

N = 20_000
position = Position(734_563_111, 9_876_543_210)
cluster = "7715491541305739396"


def signed() -> str:
    raw = signing.Signer(salt="orders.outbox.consistency-token", algorithm="sha256").sign(
        f"ct2.{position.xid}.{position.position}")
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def main() -> None:
    encrypted, legacy = encode_token(position, cluster), signed()
    rows = {
        "encode, encrypted (ct3)": lambda: encode_token(position, cluster),
        "read, encrypted (ct3)": lambda: decode_token(encrypted),
        "encode, signed (ct2, before)": signed,
        "read, signed (ct2, before)": lambda: decode_token(legacy),
    }
    for name, call in rows.items():
        best = min(timeit.repeat(call, number=N, repeat=5)) / N * 1e6
        print(f"{name:<30} {best:7.1f} µs")


if __name__ == "__main__":
    main()
