"""Money as people read it. Amounts are integer cents everywhere else; this only shows them."""

from __future__ import annotations


def format_cents(cents: int | None) -> str:
    """1781 -> "$17.81", 123456789 -> "$1,234,567.89", -250 -> "-$2.50"."""
    if cents is None:
        return "-"
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(int(cents)), 100)
    return f"{sign}${whole:,}.{part:02d}"
