"""Readiness probes cost the shop nothing it protects, and answer fast.

/api/health/ready is admitted whatever the load, so a burst of probes must not take the
web's pooled database connections nor wait on a dependency that hangs: here
Elasticsearch accepts connections and never answers, and a dozen probes arrive at once
on a server with a pool of two connections. Commands and strong reads go on; every
probe says PostgreSQL is fine and Elasticsearch is down.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from tests.support.http import Http, api_token_for
from tests.support.operating import commit_a_later_transaction
from tests.support.ports import SilentListener
from tests.support.servers import uvicorn_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PROBES = 12


def test_probes_of_a_hanging_elasticsearch_take_no_pooled_connection(
    read_models, make_customer, make_product
):
    customer = make_customer(balance_cents=100_000)
    product = make_product(stock=100)
    with SilentListener() as hanging, uvicorn_server(
        ELASTICSEARCH_URL=f"http://127.0.0.1:{hanging.port}",
        DATABASE_POOL_MAX_SIZE="2", DATABASE_POOL_TIMEOUT_SECONDS="1",
        HEALTH_CACHE_SECONDS="0",
    ) as port:
        client = Http(port, api_token_for(customer))
        with ThreadPoolExecutor(max_workers=PROBES + 4) as pool:
            probes = [pool.submit(Http(port).call, "GET", "/api/health/ready") for _ in range(PROBES)]
            # Commands and strong reads while the probes run.
            orders = [
                pool.submit(client.call, "POST", "/api/orders",
                            {"lines": [{"product_id": product.pk, "quantity": 1}]})
                for _ in range(4)
            ]
            answers = [f.result(timeout=60) for f in probes]
            placed = [f.result(timeout=60) for f in orders]
    assert [status for status, _, _ in placed] == [201] * 4, placed
    for status, _, body in answers:
        assert status == 200, body
        assert body["status"] == "degraded" and body["degraded"] == ["elasticsearch"]
        assert body["checks"]["postgres"]["status"] == "ok", body
        assert body["checks"]["elasticsearch"]["status"] == "down"


def test_readiness_is_degraded_while_a_transaction_holds_the_views(read_models):
    db = connection.settings_dict
    import psycopg

    with uvicorn_server(HORIZON_HOLD_ALERT_SECONDS="0.2", HEALTH_CACHE_SECONDS="0") as port:
        assert Http(port).call("GET", "/api/health/ready")[2]["status"] == "ok"
        with psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
                             user=db["USER"], dbname=db["NAME"], autocommit=True) as holder:
            holder.execute("BEGIN")
            holder.execute("SELECT pg_current_xact_id()")
            commit_a_later_transaction()
            status, _, body = wait_until(
                lambda: (found := Http(port).call("GET", "/api/health/ready"))[2]["status"]
                == "degraded" and found, 30, message="readiness never said the views are held",
            )
            holder.execute("ROLLBACK")
            pid = holder.info.backend_pid
        assert status == 200
        assert body["degraded"] == ["outbox_horizon"]
        # Which dependency, never the internals (who holds it is for operators).
        assert str(pid) not in json.dumps(body)
        wait_until(lambda: Http(port).call("GET", "/api/health/ready")[2]["status"] == "ok", 30,
                   message="readiness did not recover once the transaction ended")
