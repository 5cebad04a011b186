"""A browser's side of HTML forms over plain HTTP: cookies kept, CSRF field sent back."""

from __future__ import annotations

import http.client
import re
from urllib.parse import urlencode


class FormClient:
    """One visitor of the server under test: its cookies (CSRF, session) between requests,
    and an X-Forwarded-For address of its own if given."""

    def __init__(self, port: int, address: str | None = None):
        self.port = port
        self.cookies: dict[str, str] = {}
        self.headers = {"X-Forwarded-For": address} if address else {}

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, dict[str, str], str]:
        sent = {**self.headers, **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    key, _, rest = value.partition("=")
                    self.cookies[key.strip()] = rest.split(";", 1)[0]
            return (response.status, {k.lower(): v for k, v in response.getheaders()},
                    response.read().decode(errors="replace"))
        finally:
            conn.close()

    def submit(self, path: str, fields: dict) -> tuple[int, dict[str, str], str]:
        """GET the form's page, then POST the fields to it with its CSRF token."""
        status, _, html = self.request("GET", path)
        assert status == 200, (path, status, html[:500])
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
        return self.request(
            "POST", path, urlencode({**fields, "csrfmiddlewaretoken": token}).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
