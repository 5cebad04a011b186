"""Order statistics from the orders_search view equal the same sums over PostgreSQL:
per status, and per calendar bucket of [from, to) in the caller's time zone."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from orders import commands
from orders.models import Order
from tests.support.readside import project_all

pytestmark = pytest.mark.django_db(transaction=True)

UTC = ZoneInfo("UTC")
# Order times spread over four days in January (no daylight-saving change in Europe),
# several close to midnight and to the hour, where a zone moves them between buckets.
ORDER_TIMES = [
    datetime(2026, 1, 10, 22, 45, tzinfo=UTC),
    datetime(2026, 1, 10, 23, 30, tzinfo=UTC),
    datetime(2026, 1, 11, 0, 15, tzinfo=UTC),
    datetime(2026, 1, 11, 5, 29, 59, tzinfo=UTC),
    datetime(2026, 1, 11, 5, 30, tzinfo=UTC),
    datetime(2026, 1, 11, 18, 0, tzinfo=UTC),
    datetime(2026, 1, 12, 23, 59, 59, tzinfo=UTC),
    datetime(2026, 1, 13, 12, 0, tzinfo=UTC),
    datetime(2026, 1, 14, 3, 0, tzinfo=UTC),
    datetime(2026, 2, 2, 9, 0, tzinfo=UTC),
]


@pytest.fixture
def history(read_models, make_customer, make_product):
    """Orders at known times in every status, projected into orders_search."""
    customer = make_customer(balance_cents=10_000_000)
    products = [make_product(price_cents=price, stock=1000) for price in (700, 1250, 3999)]
    for i, created_at in enumerate(ORDER_TIMES):
        order = commands.place_order(
            customer_id=customer.pk,
            lines=[commands.LineRequest(products[i % 3].pk, 1 + i % 2)],
        ).value
        if i % 4 in (1, 2):
            commands.pay_order(order_id=order.pk)
        if i % 4 == 2:
            commands.ship_order(order_id=order.pk)
        if i % 4 == 3:
            commands.cancel_order(order_id=order.pk)
        # Historical orders: the creation time is set before the projector first loads
        # them, as an import of older orders would.
        Order.objects.filter(pk=order.pk).update(created_at=created_at)
    project_all()


def _postgres_buckets(start: datetime, end: datetime, interval: str, zone: str) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT bucket AT TIME ZONE %(zone)s, count(o.id),
                   coalesce(sum(o.total_cents) FILTER (WHERE o.status IN ('paid', 'shipped')), 0)
            FROM generate_series(
                date_trunc(%(interval)s, %(start)s AT TIME ZONE %(zone)s),
                date_trunc(%(interval)s, (%(end)s - interval '1 millisecond') AT TIME ZONE %(zone)s),
                ('1 ' || %(interval)s)::interval
            ) AS bucket
            LEFT JOIN {Order._meta.db_table} o
              ON date_trunc(%(interval)s, o.created_at AT TIME ZONE %(zone)s) = bucket
             AND o.created_at >= %(start)s AND o.created_at < %(end)s
            GROUP BY bucket ORDER BY bucket
            """,
            {"start": start, "end": end, "interval": interval, "zone": zone},
        )
        return [
            {"start": row[0], "count": row[1], "revenue_cents": int(row[2])}
            for row in cursor.fetchall()
        ]


def _postgres_by_status(start: datetime, end: datetime) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT status, count(*), sum(total_cents) FROM {Order._meta.db_table} "
            "WHERE created_at >= %s AND created_at < %s GROUP BY status",
            [start, end],
        )
        rows = cursor.fetchall()
    return sorted(
        ({"status": s, "count": c, "total_cents": int(t)} for s, c, t in rows),
        key=lambda b: b["status"],
    )


@pytest.mark.parametrize(
    ("interval", "zone", "start", "end"),
    [
        # Ends exactly on a bucket boundary: `to` is exclusive, so no bucket starts there.
        ("hour", "Asia/Kolkata", "2026-01-10T22:30:00+00:00", "2026-01-11T06:30:00+00:00"),
        ("day", "Europe/Berlin", "2026-01-10T00:00:00+01:00", "2026-01-14T00:00:00+01:00"),
        ("day", "UTC", "2026-01-10T00:00:00Z", "2026-01-14T00:00:00Z"),
        ("day", "Pacific/Auckland", "2026-01-10T12:00:00Z", "2026-01-13T11:00:00Z"),
        ("week", "UTC", "2026-01-05T00:00:00Z", "2026-02-09T00:00:00Z"),
        ("month", "America/New_York", "2026-01-01T00:00:00-05:00", "2026-03-01T00:00:00-05:00"),
    ],
)
def test_buckets_equal_postgresql(history, staff_client, interval, zone, start, end):
    response = staff_client.get(
        "/api/stats/orders",
        {"from": start, "to": end, "interval": interval, "time_zone": zone},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    start_at, end_at = datetime.fromisoformat(start), datetime.fromisoformat(end)
    got = [
        {**b, "start": datetime.fromisoformat(b["start"])} for b in body["buckets"]
    ]
    expected = _postgres_buckets(start_at, end_at, interval, zone)
    assert got == expected
    assert got[-1]["start"] < end_at
    assert sum(b["count"] for b in got) > 0
    assert sorted(body["by_status"], key=lambda b: b["status"]) == _postgres_by_status(
        start_at, end_at
    )
    # Each bucket starts at a wall-clock boundary of the zone it was asked in.
    for bucket in got:
        local = bucket["start"].astimezone(ZoneInfo(zone))
        assert (local.minute, local.second) == (0, 0)
        assert local.utcoffset() == bucket["start"].utcoffset()


def test_a_wall_clock_window_is_read_in_the_requested_zone(history, staff_client):
    response = staff_client.get(
        "/api/stats/orders",
        {"from": "2026-01-11T00:00:00", "to": "2026-01-12T00:00:00", "interval": "day",
         "time_zone": "Asia/Kolkata"},
    )
    assert response.status_code == 200, response.content
    kolkata = ZoneInfo("Asia/Kolkata")
    start = datetime(2026, 1, 11, tzinfo=kolkata)
    assert response.json()["buckets"] == [
        {**b, "start": b["start"].astimezone(kolkata).isoformat()}
        for b in _postgres_buckets(start, start + timedelta(days=1), "day", "Asia/Kolkata")
    ]


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "+05:30", "x" * 65])
def test_an_unknown_time_zone_is_a_400_with_a_stable_code(staff_client, zone):
    response = staff_client.get("/api/stats/orders", {"time_zone": zone})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"]["time_zone"][0]["code"] in {
        "unknown_time_zone", "max_length",
    }
