"""customer_dashboard (Redis): balance, open orders, lifetime spend, the latest orders.

Built from the customer and all of their orders, so its version is the customer's
version plus the sum of their orders' versions: every change to any of them makes it
grow. Its outbox rows are partitioned by customer, so exactly one segment writes a
given customer's dashboard.
"""

from __future__ import annotations

from django.db import connection

from orders.models import Customer, Order
from readmodels.projectors.base import Projector, keys_in_order
from readmodels.stores import Doc
from readmodels.stores.adapters import REDIS

RECENT_ORDERS = 20
OPEN_STATUSES = ("pending", "paid")
SPENT_STATUSES = ("paid", "shipped")
# A timestamptz as datetime.isoformat() prints it in UTC: microseconds only when not zero.
_ISO_UTC = (
    "to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') "
    "|| CASE WHEN extract(microseconds FROM {column})::bigint %% 1000000 = 0 THEN '' "
    "ELSE to_char({column} AT TIME ZONE 'UTC', '.US') END || '+00:00'"
)


class CustomerDashboardProjector(Projector):
    name = "customer_dashboard"
    store = REDIS
    consumes = ("customer", "order")

    def keys_for(self, rows):
        return {row.partition_key for row in rows}

    def load(self, keys):
        ids = sorted(int(k) for k in keys)
        if not ids:
            return []
        customers = {c.pk: c for c in Customer.objects.filter(pk__in=ids)}
        totals = {cid: (0, 0, 0, 0) for cid in customers}
        recent = {cid: [] for cid in customers}
        order_table = Order._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT customer_id, count(*), coalesce(sum(version), 0)::bigint, "
                "count(*) FILTER (WHERE status = ANY(%s)), "
                "coalesce(sum(total_cents) FILTER (WHERE status = ANY(%s)), 0)::bigint "
                f"FROM {order_table} WHERE customer_id = ANY(%s) GROUP BY customer_id",
                [list(OPEN_STATUSES), list(SPENT_STATUSES), ids],
            )
            for cid, count, versions, open_count, spent in cursor.fetchall():
                totals[cid] = (count, versions, open_count, spent)
            # The latest orders through the (customer, -created_at) index: 20 rows per
            # customer however long their history. Ids and times come back as text in
            # the form the document holds: building UUID and datetime objects only to
            # print them again was most of this query's cost.
            cursor.execute(
                "SELECT c.id, o.id::text, o.status, o.total_cents, "
                f"  {_ISO_UTC.format(column='o.created_at')} "
                "FROM unnest(%s::bigint[]) AS c(id) CROSS JOIN LATERAL ("
                "  SELECT id, status, total_cents, created_at "
                f"  FROM {order_table} WHERE customer_id = c.id "
                "  ORDER BY created_at DESC, id DESC LIMIT %s"
                ") o ORDER BY c.id, o.created_at DESC, o.id DESC",
                [ids, RECENT_ORDERS],
            )
            for cid, order_id, status, total, created_at in cursor.fetchall():
                recent[cid].append(
                    {"id": order_id, "status": status, "total_cents": total, "created_at": created_at}
                )
        docs = []
        for cid, customer in customers.items():
            count, versions, open_count, spent = totals[cid]
            docs.append(
                Doc(
                    key=str(cid),
                    version=customer.version + versions,
                    body={
                        "customer_id": cid,
                        "user_id": customer.user_id,
                        "name": customer.name,
                        "email": customer.email,
                        "balance_cents": customer.balance_cents,
                        "order_count": count,
                        "open_orders": open_count,
                        "lifetime_spend_cents": spent,
                        "recent_orders": recent[cid],
                        "version": customer.version + versions,
                    },
                )
            )
        return docs

    def all_keys(self, batch_size: int = 1000, after: str | None = None):
        return keys_in_order(Customer.objects.all(), batch_size, after, int)

    def key_exists(self, keys):
        ids = [int(k) for k in keys if k.isdigit()]
        return {str(i) for i in Customer.objects.filter(pk__in=ids).values_list("pk", flat=True)}
