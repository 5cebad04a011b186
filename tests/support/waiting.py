"""Wait for a condition with a deadline: never a sleep standing in for the condition."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any


def wait_until(
    condition: Callable[[], Any],
    timeout: float = 10.0,
    *,
    interval: float = 0.02,
    message: str = "",
    process: subprocess.Popen | None = None,
) -> Any:
    """Poll `condition` until it returns something truthy (returned), or fail loudly.

    `process`: fail at once if it exits meanwhile (a server that died will not answer).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{message}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {message or condition}")
        time.sleep(interval)
