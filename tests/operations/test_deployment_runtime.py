"""The shipped settings as deployed: `check --deploy` passes with DEBUG off, and after
`collectstatic` (as the Dockerfile runs it) a real uvicorn with DEBUG off serves the
admin's static files and a Swagger UI that loads nothing from a CDN."""

from __future__ import annotations

import http.client
import os
import re
import secrets
import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.servers import uvicorn_server

PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "shop.settings",
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "shop.example.com",
}


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "THROTTLE_"))}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**clean, **PRODUCTION, **env}, timeout=300)


def test_check_deploy_is_clean_with_the_shipped_defaults():
    result = _manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (1 silenced)" in result.stdout


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    static_root = tmp_path_factory.mktemp("static")
    result = _manage("collectstatic", "--noinput", STATIC_ROOT=str(static_root))
    assert result.returncode == 0, result.stderr
    return static_root


def test_collectstatic_gathers_the_admin_and_swagger_ui(collected):
    for path in (
        "admin/css/base.css",
        "admin/js/core.js",
        "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
        "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css",
        "staticfiles.json",  # the manifest of hashed names WhiteNoise serves
    ):
        assert (collected / path).is_file(), path


def _get(port: int, path: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_uvicorn_with_debug_off_serves_static_files_and_a_self_hosted_swagger_ui(
    collected, django_db_setup, elasticsearch_server
):
    with uvicorn_server(STATIC_ROOT=str(collected)) as port:
        status, headers, body = _get(port, "/static/admin/css/base.css")
        assert status == 200 and headers["content-type"].startswith("text/css")
        assert body

        status, _, page = _get(port, "/api/docs/")
        assert status == 200
        page = page.decode()
        assert "swagger-ui" in page.lower()
        assert not re.search(r"(?:src|href)=\"https?://", page), "Swagger UI loads from a CDN"
        assets = re.findall(r"(?:src|href)=\"(/static/[^\"]+)\"", page)
        assert any("swagger-ui-bundle" in a for a in assets), page
        for asset in assets:
            assert _get(port, asset)[0] == 200, asset
