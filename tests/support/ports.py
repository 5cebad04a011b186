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


class SilentListener:
    """A port that accepts connections (the kernel completes the handshake) and never
    answers: a server that hangs, as a store does when it accepts and never replies."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(512)
        self.port = self.socket.getsockname()[1]

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> SilentListener:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
