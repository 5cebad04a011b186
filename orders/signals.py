"""Signals the write side sends; the read side listens without orders importing it."""

from django.dispatch import Signal

# Sent after a transaction that appended outbox rows has committed, with
# `aggregate_types` (the set of aggregate types it touched) and `position` (the
# commit position of its last row). Receivers must not fail the caller: the command
# is already committed.
outbox_committed = Signal()

# Sent after a command answered a signed-in user with a consistency token (a replay of
# an idempotent command too), with `user_id` and `token`. The read side remembers the
# newest token per user so that the user's projected reads see their own writes.
# Receivers must not fail the caller: the command is already committed.
command_answered = Signal()
