"""The compose stack's PostgreSQL init script, run for real on a throwaway cluster.

The app connects as the role deploy/postgres/10-app-role.sh makes: it must be able to
migrate its own database from empty, and be unable to do what only an operator should
(superuser powers, other roles, other databases).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from tests.support import ROOT
from tests.support.fault_stack import _as_postgres_user, _pg_bin
from tests.support.ports import free_port

SCRIPT = ROOT / "deploy" / "postgres" / "10-app-role.sh"


@pytest.fixture
def cluster():
    """A fresh PostgreSQL cluster whose superuser is `postgres`, as in the image."""
    # Not pytest's tmp_path: its parents are private to root, and the server runs as
    # the postgres user.
    tmp_path = Path(tempfile.mkdtemp(prefix="app-role-"))
    data = tmp_path / "data"
    data.mkdir()
    log = tmp_path / "pg.log"
    log.touch()
    if os.geteuid() == 0:
        for path in (tmp_path, data, log):
            shutil.chown(path, "postgres")
    subprocess.run(_as_postgres_user([_pg_bin("initdb"), "-D", str(data), "-U", "postgres",
                                      "-A", "trust", "--no-sync", "-E", "UTF8"]),
                   check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    ctl = [_pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60"]
    subprocess.run(_as_postgres_user([*ctl, "-o", f"-p {port} -k {tmp_path} "
                                      "-c listen_addresses=127.0.0.1 -c fsync=off", "start"]),
                   check=True, stdout=subprocess.DEVNULL)
    try:
        yield port
    finally:
        subprocess.run(_as_postgres_user([*ctl, "-m", "immediate", "stop"]),
                       stdout=subprocess.DEVNULL)
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_the_app_role_migrates_its_database_and_can_do_nothing_more(cluster):
    env = {**os.environ, "POSTGRES_USER": "postgres", "SHOP_DB_PASSWORD": "app-password",
           "PGHOST": "127.0.0.1", "PGPORT": str(cluster)}
    subprocess.run(["sh", str(SCRIPT)], env=env, check=True, capture_output=True)

    app_url = f"postgres://shop:app-password@127.0.0.1:{cluster}/shop"
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, capture_output=True,
        text=True, env={**os.environ, "DJANGO_SETTINGS_MODULE": "shop.settings",
                        "DJANGO_DEBUG": "true", "DATABASE_URL": app_url},
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]

    with psycopg.connect(app_url, autocommit=True) as app:
        role = app.execute("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
                           "WHERE rolname = current_user").fetchone()
        assert role == (False, False, False)
        tables = app.execute("SELECT count(*) FROM pg_tables WHERE tableowner = 'shop'")
        assert tables.fetchone()[0] > 10
        for statement in ("CREATE DATABASE other", "CREATE ROLE intruder",
                          "ALTER ROLE shop SUPERUSER", "COPY (SELECT 1) TO PROGRAM 'true'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(statement)
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(f"postgres://shop:app-password@127.0.0.1:{cluster}/postgres").close()
