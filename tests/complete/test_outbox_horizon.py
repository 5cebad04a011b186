"""The outbox horizon counts only transactions that could write this database's outbox.

A transaction that holds an xid in another database of the same cluster must not hold
the views back; one in the shop's own database must (it could still commit outbox rows
below every later one), and it is named for operators. Prepared transactions are placed
by their database too; they are checked on a throwaway cluster of the test's own (the
shared one allows no prepared transactions).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from orders import commands, outbox
from orders.outbox import decode_token
from orders.outbox.horizon import horizon_sql
from readmodels import projectors
from readmodels.pipeline import runner
from tests.support import ROOT
from tests.support.fault_stack import Postgres
from tests.support.processes import worker_env
from tests.support.readside import checkpoint_position, project_all
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _session(dbname: str, application_name: str = "a colleague's psql"):
    db = connection.settings_dict
    return psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
                           user=db["USER"], dbname=dbname, autocommit=True,
                           application_name=application_name)


def _holding_an_xid(session) -> int:
    session.execute("BEGIN")
    return int(session.execute("SELECT pg_current_xact_id()::text").fetchone()[0])


def test_a_transaction_open_in_another_database_does_not_hold_the_views(read_models, make_customer):
    with _session("postgres") as elsewhere:
        held = _holding_an_xid(elsewhere)
        placed = commands.top_up_balance(customer_id=make_customer().pk, amount_cents=100)
        assert outbox.safe_horizon() > held
        # Every view passes the change while the other database's transaction stays open.
        project_all(timeout=15)
        assert checkpoint_position("customer_dashboard").covers(decode_token(placed.token))
        holder = outbox.horizon_holder()
        assert holder is None or holder.xid != held
        elsewhere.execute("ROLLBACK")


def test_a_transaction_open_in_the_shop_s_database_holds_the_views_and_is_named(
    read_models, make_customer
):
    project_all()
    with _session(connection.settings_dict["NAME"]) as here:
        held = _holding_an_xid(here)
        placed = commands.top_up_balance(customer_id=make_customer().pk, amount_cents=100)
        runner.run_segment(projectors.get("customer_dashboard"), ignore_backoff=True)
        assert not checkpoint_position("customer_dashboard").covers(decode_token(placed.token))
        assert outbox.safe_horizon() == held

        holder = outbox.horizon_holder()
        assert holder is not None and holder.xid == held
        assert holder.pid == here.info.backend_pid
        assert holder.database == connection.settings_dict["NAME"]
        assert holder.application_name == "a colleague's psql"
        assert holder.state == "idle in transaction"
        assert holder.age_seconds is not None and holder.age_seconds >= 0
        assert str(here.info.backend_pid) in holder.describe()

        here.execute("ROLLBACK")
    project_all(timeout=15)
    assert checkpoint_position("customer_dashboard").covers(decode_token(placed.token))


def test_prepared_transactions_hold_only_their_own_database():
    # Not pytest's tmp_path: the server runs as the postgres user, which must reach it.
    root = Path(tempfile.mkdtemp(prefix="horizon-cluster-"))
    cluster = Postgres(root)
    cluster.start(settings="-c max_prepared_transactions=5")
    try:
        url = f"postgres://postgres@127.0.0.1:{cluster.port}"
        with psycopg.connect(f"{url}/postgres", autocommit=True) as admin:
            admin.execute("CREATE DATABASE other")
        with psycopg.connect(f"{url}/shop", autocommit=True) as shop, \
                psycopg.connect(f"{url}/other", autocommit=True) as other:

            def horizon() -> int:
                return int(shop.execute(f"SELECT ({horizon_sql()})::text").fetchone()[0])

            def prepare(session, gid: str) -> int:
                session.execute("BEGIN")
                xid = int(session.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
                session.execute(f"PREPARE TRANSACTION '{gid}'")
                # A later transaction commits, as the shop's always do: a snapshot's xmax
                # follows the newest completed xid, so only now is the prepared one a
                # running xid of the snapshot (below xmax) rather than beyond it.
                shop.execute("SELECT pg_current_xact_id()")
                return xid

            elsewhere = prepare(other, "elsewhere")
            assert horizon() > elsewhere  # the other database's prepared transaction: not ours
            here = prepare(shop, "here")
            assert horizon() == here  # ours holds, though no backend runs it any more
            shop.execute("COMMIT PREPARED 'here'")
            assert horizon() > here
            other.execute("ROLLBACK PREPARED 'elsewhere'")
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


_IDLE_IN_A_TRANSACTION = """
import sys, time, django
django.setup()
from django.db import connection, transaction
with connection.cursor() as cursor:
    cursor.execute("SHOW idle_in_transaction_session_timeout")
    print(cursor.fetchone()[0], flush=True)
with transaction.atomic():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), pg_current_xact_id()::text")
        print(*cursor.fetchone(), flush=True)
    time.sleep(float(sys.argv[1]))
"""


def _app_session_left_idle(seconds: float, *, unset: tuple[str, ...] = (), **env):
    environment = worker_env(**env)
    for name in unset:
        environment.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-c", _IDLE_IN_A_TRANSACTION, str(seconds)], cwd=ROOT, env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    timeout = process.stdout.readline().strip()
    pid, xid = process.stdout.readline().split()
    return process, timeout, int(pid), int(xid)


def test_the_shop_s_sessions_end_a_transaction_left_idle_and_let_the_views_go(read_models):
    # The shipped default, on a session made with the production settings.
    process, shipped, _, _ = _app_session_left_idle(
        0, DJANGO_SETTINGS_MODULE="shop.settings", unset=("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS",)
    )
    process.wait(30)
    assert shipped == "10s"

    process, timeout, pid, xid = _app_session_left_idle(
        60, DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS="1"
    )
    try:
        assert timeout == "1s"
        assert outbox.safe_horizon() <= xid  # held while the transaction is open
        # The server ends the session after a second idle in its transaction.
        wait_until(lambda: outbox.safe_horizon() > xid, 15,
                   message="the idle transaction kept holding the horizon")
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            assert cursor.fetchone()[0] == 0
    finally:
        process.kill()
        process.wait(10)
