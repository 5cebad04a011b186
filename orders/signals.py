"""Signals the write side sends; the read side listens without orders importing it."""

from django.dispatch import Signal

# Sent after a transaction that appended outbox rows has committed, with
# `aggregate_types` (the set of aggregate types it touched) and `position` (the
# commit position of its last row). Receivers must not fail the caller: the command
# is already committed.
outbox_committed = Signal()
