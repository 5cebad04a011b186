"""Plain HTTP against a real server a test started: the answer's status, headers and body."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass

from knox.models import AuthToken


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return json.loads(self.body)

    @property
    def code(self) -> str:
        return self.json()["error"]["code"]


def call(port: int, method: str, path: str, body=None, headers: dict | None = None) -> Answer:
    headers = dict(headers or {})
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return Answer(
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read(),
        )
    finally:
        conn.close()


def auth(user) -> dict:
    _, token = AuthToken.objects.create(user=user)
    return {"Authorization": f"Token {token}"}


def too_large_body(settings) -> bytes:
    """A JSON body just over DATA_UPLOAD_MAX_MEMORY_SIZE."""
    return b'{"lines": [], "pad": "' + b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + b'"}'


class Http:
    """A plain HTTP client of the server under test (a new connection per request)."""

    def __init__(self, port: int, token: str | None = None):
        self.port, self.token = port, token

    def call(self, method: str, path: str, body=None, headers=None, timeout: float = 60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        sent = {"Content-Type": "application/json", **(headers or {})}
        if self.token:
            sent["Authorization"] = f"Token {self.token}"
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body),
                         headers=sent)
            response = conn.getresponse()
            raw = response.read()
            if raw and response.headers.get("Content-Type", "").startswith("application/json"):
                return response.status, response.headers, json.loads(raw)
            return response.status, response.headers, raw.decode(errors="replace")
        finally:
            conn.close()


def api_token_for(customer) -> str:
    """A new API token of the customer's login."""
    from orders.models import Customer

    user = Customer.objects.get(pk=customer.pk).user
    return AuthToken.objects.create(user=user)[1]
