"""Free TCP ports for servers a test starts, and whether a port answers."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port nothing listens on right now (nothing will, unless someone starts it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
