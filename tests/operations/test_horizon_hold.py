"""A transaction holding the outbox horizon is named where operators look.

While a transaction of the shop's database stays open, no view shows a change committed
after it began. Past HORIZON_HOLD_ALERT_SECONDS, `projections status`, /metrics and the
projections admin name it: pid, database, application, state, how long.
"""

from __future__ import annotations

import io
import json

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from orders import outbox
from tests.support.operating import commit_a_later_transaction, metric_sample
from tests.support.readside import project_all
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _status(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("projections", "status", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        return exc.code, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


@pytest.fixture
def forgotten_session(read_models, settings):
    settings.READMODELS = {**settings.READMODELS, "HORIZON_HOLD_ALERT_SECONDS": 0.2}
    project_all()
    db = connection.settings_dict
    with psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
                         user=db["USER"], dbname=db["NAME"], autocommit=True,
                         application_name="forgotten psql") as session:
        session.execute("BEGIN")
        session.execute("SELECT pg_current_xact_id()")
        commit_a_later_transaction()
        wait_until(lambda: (outbox.horizon_holder() or None) and outbox.horizon_holder().age_seconds > 0.2,
                   10, message="the session did not hold the horizon")
        yield session.info.backend_pid
        session.execute("ROLLBACK")


def test_projections_status_names_the_holder(forgotten_session):
    code, table, advice = _status()
    assert code == 1
    assert f"pid {forgotten_session}" in advice and "'forgotten psql'" in advice
    assert "idle in transaction" in advice
    assert f"pg_terminate_backend({forgotten_session})" in advice

    code, output, _ = _status("--json")
    assert code == 1
    holders = {json.dumps(row["horizon_holder"], sort_keys=True) for row in json.loads(output)}
    [holder] = [json.loads(h) for h in holders]
    assert holder["pid"] == forgotten_session
    assert holder["application_name"] == "forgotten psql"
    assert holder["database"] == connection.settings_dict["NAME"]
    assert holder["state"] == "idle in transaction" and holder["age_seconds"] > 0


def test_metrics_and_the_projections_admin_name_the_holder(forgotten_session, client, admin_client_,
                                                            settings):
    settings.METRICS_TOKEN = "scraper-token"
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scraper-token").content.decode()
    assert metric_sample(text, "shop_outbox_horizon_held_seconds") > 0.2
    assert metric_sample(
        text, "shop_outbox_horizon_holder_seconds", pid=str(forgotten_session),
        application_name="forgotten psql", state="idle in transaction",
    ) > 0.2

    page = admin_client_.get("/admin/readmodels/checkpoint/").content.decode()
    assert 'id="horizon-held"' in page
    assert f"pid {forgotten_session}" in page and "forgotten psql" in page


def test_nothing_is_named_when_no_transaction_holds_the_views(read_models, client, settings):
    settings.METRICS_TOKEN = "scraper-token"
    project_all()
    code, _, advice = _status()
    assert code == 0 and advice == ""
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scraper-token").content.decode()
    assert metric_sample(text, "shop_outbox_horizon_holder_seconds") is None
