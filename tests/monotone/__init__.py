"""Monotone: duplicates, replays and reordering never move a view backwards (guarantee 3)."""
