"""Durations as people read them, for the projections page and `manage.py projections`."""

from __future__ import annotations


def duration(seconds: float | None) -> str:
    """0.4 -> "0.4 s", 12.4 -> "12 s", 125 -> "2 min 5 s", 3725 -> "1 h 2 min"; None -> ""."""
    if seconds is None:
        return ""
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, whole = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {whole} s" if whole else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
