"""Shared set-up for benchmarks: a database and namespaces of their own, and bulk data.

Never the dev database: each benchmark names its own database (created and migrated
here) and its own Elasticsearch/Redis namespace. Call `setup()` before importing
anything from Django.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(database: str, namespace: str, **extra_env: str) -> None:
    # Production settings: DEBUG's query log and debug cursors are not what users run.
    os.environ["DJANGO_DEBUG"] = "false"
    os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-secret-key-0123456789abcdefghijklmnop")
    os.environ["DJANGO_SETTINGS_MODULE"] = "shop.settings"
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    os.environ["READMODELS_NAMESPACE"] = namespace
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # Plain HTTP on loopback, and one client driving the load: no redirect, no throttle.
    os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
    for scope in ("LOGIN_ADDRESS", "LOGIN_ACCOUNT", "ANON_READ", "COMMANDS", "STREAM"):
        os.environ.setdefault(f"THROTTLE_RATE_{scope}", "100000000/min")
    os.environ.update(extra_env)
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname=%s", [database]).fetchone():
            c.execute(f'CREATE DATABASE "{database}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def reset_views() -> None:
    """Empty this namespace's ES indices and Redis keys, then create the indices."""
    from django.core.management import call_command

    from readmodels import config
    from readmodels.stores import es, redis_store

    client = redis_store.client()
    keys = list(client.scan_iter(match=f"{config.namespace()}:*", count=5000))
    for start in range(0, len(keys), 5000):
        client.delete(*keys[start : start + 5000])
    names = list(es.client().indices.get(index=f"{config.namespace()}_*", allow_no_indices=True))
    if names:
        es.client().indices.delete(index=",".join(names))
    call_command("setup_readmodels", verbosity=0)


def drop_benchmark_indices() -> int:
    """Delete every benchmark's Elasticsearch indices (their names start with "bench").

    The dev server keeps all its indices in one file that it rewrites about a second
    after every write: after a full run it held 90,000 documents (48 MB) and each save
    stalled it for a long while, so a benchmark's ES figures depended on which
    benchmarks had run before it (orders_search p99 at 50/s: 310 ms on a fresh server,
    1,144 ms after the others). Each benchmark now starts from an empty server. Names
    are listed first: real Elasticsearch refuses wildcard deletes by default.
    """
    from elasticsearch import Elasticsearch

    client = Elasticsearch(os.environ.get("ELASTICSEARCH_URL", "http://127.0.0.1:9200"))
    # Except session_reads': it runs `make run`'s own stack on a database whose demo
    # data is loaded once, and that stack does not project it again (a few hundred
    # documents).
    names = [name for name in client.indices.get(index="bench*", allow_no_indices=True,
                                                 expand_wildcards="all")
             if not name.startswith("bench_session_")]
    for start in range(0, len(names), 50):
        client.indices.delete(index=",".join(names[start:start + 50]))
    return len(names)


def truncate() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE orders_payment, orders_orderline, orders_order, orders_product, "
            "orders_customer, orders_outboxmessage, orders_idempotencykey, "
            "readmodels_checkpoint, readmodels_deadletter, readmodels_rebuild, "
            "readmodels_reconcilerun, readmodels_lagsample, knox_authtoken "
            "RESTART IDENTITY CASCADE"
        )
        cursor.execute("DELETE FROM auth_user WHERE NOT is_superuser")


def bulk_shop(*, customers: int, products: int, orders: int, lines_per_order: int = 2,
              outbox: bool = True) -> None:
    """Insert a shop of this size straight into PostgreSQL (fast: set-based SQL).

    Every order gets an OrderPlaced outbox row (partitioned by customer) when `outbox`,
    as if placed through the commands, so projectors have a backlog to drain.
    """
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, "
            "email, is_staff, is_active, date_joined) SELECT '!', false, 'bench' || g, '', '', "
            "'bench' || g || '@example.com', false, true, now() FROM generate_series(1, %s) g",
            [customers],
        )
        cursor.execute(
            "INSERT INTO orders_customer (user_id, email, name, balance_cents, version, "
            "profile_version, created_at, updated_at) SELECT u.id, u.email, 'Customer ' || u.id, "
            "1000000, 1, 1, now(), now() FROM auth_user u WHERE u.username LIKE 'bench%%' "
            # Not the benchmarks' staff login (a superuser, kept across runs): staff
            # are not customers.
            "AND NOT u.is_staff",
            [],
        )
        cursor.execute(
            "INSERT INTO orders_product (sku, name, description, category, price_cents, stock, "
            "active, version, created_at, updated_at) SELECT 'SKU-' || g, 'Product ' || g, "
            "'A product', 'cat' || (g %% 10), 100 + g, 1000000, true, 1, now(), now() "
            "FROM generate_series(1, %s) g",
            [products],
        )
        cursor.execute(
            "CREATE TEMP TABLE bench_orders ON COMMIT DROP AS SELECT gen_random_uuid() AS id, "
            "(SELECT min(id) FROM orders_customer) + (g %% %s) AS customer_id, g AS n, "
            "now() - (g || ' seconds')::interval AS created_at FROM generate_series(1, %s) g",
            [customers, orders],
        )
        cursor.execute(
            "INSERT INTO orders_order (id, customer_id, status, total_cents, version, "
            "created_at, updated_at, paid_at) SELECT id, customer_id, "
            "CASE WHEN n %% 3 = 0 THEN 'paid' ELSE 'pending' END, 0, 1, created_at, created_at, "
            "CASE WHEN n %% 3 = 0 THEN created_at END FROM bench_orders",
            [],
        )
        cursor.execute(
            "INSERT INTO orders_orderline (order_id, product_id, quantity, unit_price_cents, "
            "product_name, product_sku) SELECT o.id, p.id, 1 + (o.n %% 3), p.price_cents, p.name, "
            "p.sku FROM bench_orders o CROSS JOIN generate_series(0, %s - 1) k "
            "JOIN orders_product p ON p.id = (SELECT min(id) FROM orders_product) "
            "+ ((o.n + k * 7) %% %s)",
            [lines_per_order, products],
        )
        cursor.execute(
            "UPDATE orders_order o SET total_cents = t.total FROM (SELECT order_id, "
            "sum(quantity * unit_price_cents) AS total FROM orders_orderline GROUP BY order_id) t "
            "WHERE t.order_id = o.id",
            [],
        )
        if outbox:
            cursor.execute(
                "INSERT INTO orders_outboxmessage (aggregate_type, aggregate_id, "
                "aggregate_version, event_type, partition_key, payload, request_id) "
                "SELECT 'order', id::text, 1, 'OrderPlaced', customer_id::text, '{}'::jsonb, '' "
                "FROM bench_orders ORDER BY n",
                [],
            )


def fresh_shop(customers: int) -> tuple[list[int], list[int]]:
    """Empty tables and views, then `customers` customers and 200 products: their ids in
    order, for an open-loop load that places each order for a fresh customer."""
    from django.db import connection

    truncate()
    reset_views()
    bulk_shop(customers=customers, products=200, orders=0, outbox=False)
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM orders_customer ORDER BY id")
        customer_ids = [r[0] for r in cursor.fetchall()]
        cursor.execute("SELECT id FROM orders_product ORDER BY id")
        product_ids = [r[0] for r in cursor.fetchall()]
        cursor.execute("ANALYZE")
    return customer_ids, product_ids


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        memory = Path("/proc/meminfo").read_text().splitlines()[0].split(":")[1].strip()
    except OSError:
        pass
    postgres = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "postgres": postgres,
        "os": platform.platform(),
    }


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def shared_machine_note(report: dict) -> str:
    """What else the machine ran meanwhile: the load average at the start and the end of
    a run, next to its core count (a benchmark's own processes count too)."""
    load = report.get("load_average")
    if not load:
        return ""
    return (f"Load average (1 min) {load['start']} at the start and {load['end']} at the end "
            f"of this run, on {os.cpu_count()} cores: the machine was shared with other "
            "work while it ran, so compare the systems within this run, not its absolute "
            "figures with other runs'. ")


def load_average() -> float:
    return round(os.getloadavg()[0], 1)

