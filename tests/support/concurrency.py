"""Helpers for tests that race real transactions from threads (each on its own connection)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection

# Long enough for a loaded machine, short enough that a hang fails the test instead of CI.
DEADLINE_SECONDS = 30.0


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def race(calls: list[Callable[[], Any]], *, timeout: float = DEADLINE_SECONDS) -> list[Outcome]:
    """Run each call in its own thread, all released together by a barrier.

    Every thread connects before the barrier (so connecting does not spread the start)
    and closes its connection afterwards. Returns one Outcome per call, in order.
    """
    barrier = threading.Barrier(len(calls))
    outcomes = [Outcome() for _ in calls]

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=timeout)
            outcomes[index].value = call()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcomes[index].error = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call), daemon=True) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    join_all(threads, timeout=timeout)
    return outcomes


def join_all(threads: list[threading.Thread], *, timeout: float = DEADLINE_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"threads still running after {timeout}s: {stuck}"


def in_thread(target: Callable[[], Any], *, name: str | None = None) -> tuple[threading.Thread, Outcome]:
    """Start target in a thread with its own connection (closed when it ends)."""
    outcome = Outcome()

    def run() -> None:
        try:
            outcome.value = target()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome.error = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread, outcome
