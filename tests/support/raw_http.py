"""HTTP/1.1 by hand over a socket: requests whose body arrives slowly, in pieces, or never.

http.client sends a request whole; these send the headers, then as much of the body as
a test says, when it says, as a slow or hostile client does, and read the answer
without sending the rest.
"""

from __future__ import annotations

import select
import socket
import threading
from contextlib import contextmanager

from tests.support.http import Answer

# How long a test waits for an answer before it counts as none (a failure, not a bound
# on the server's speed).
ANSWER_DEADLINE_SECONDS = 60


def send_headers(port: int, method: str, path: str, headers: dict[str, str],
                 first: bytes = b"") -> socket.socket:
    """A connection that has sent the request line, the headers and `first` of the body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_DEADLINE_SECONDS)
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + first)
    return sock


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def has_answer(sock: socket.socket) -> bool:
    """Whether the server has sent something (or closed) on this connection."""
    return bool(select.select([sock], [], [], 0)[0])


def read_answer(sock: socket.socket) -> Answer:
    """The next answer on the connection (a 1xx one too), within ANSWER_DEADLINE_SECONDS."""
    data = b""
    while b"\r\n\r\n" not in data:
        received = sock.recv(65536)
        if not received:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += received
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(status_line.split()[1])
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        received = sock.recv(65536)
        if not received:
            break
        body += received
    return Answer(status, headers, body[:length])


def closed_by_server(sock: socket.socket) -> bool:
    """After its answer: whether the server closed the connection (reading gives EOF)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


class SlowSenders:
    """Connections that each send a request's headers and then a byte of body a second.

    Each declares a body it will never finish. A connection stops sending once the
    server answers it; the answers are kept, in `answers`, by connection.
    """

    def __init__(self, port: int, count: int, path: str, declared: int):
        self.sockets = [
            send_headers(port, "POST", path,
                         {"Content-Type": "application/json", "Content-Length": str(declared)},
                         first=b"{")
            for _ in range(count)
        ]
        self.answers: dict[int, Answer] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    def _drip(self) -> None:
        # The attack's own pace, one byte a second, as in the issue.
        while not self._stop.wait(1):
            self.collect()
            for i, sock in enumerate(self.sockets):
                if i not in self.answers:
                    try:
                        sock.sendall(b" ")
                    except OSError:
                        pass

    def collect(self) -> int:
        """Read the answers that arrived; how many connections have one."""
        with self._lock:
            for i, sock in enumerate(self.sockets):
                if i not in self.answers and has_answer(sock):
                    self.answers[i] = read_answer(sock)
            return len(self.answers)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for sock in self.sockets:
            sock.close()


@contextmanager
def slow_senders(port: int, count: int, path: str = "/api/auth/token", declared: int = 100_000):
    senders = SlowSenders(port, count, path, declared)
    try:
        yield senders
    finally:
        senders.close()
