"""Memory of projecting one CustomerUpdated row for a customer with many orders.

    .venv/bin/python bench/customer_with_many_orders.py [--orders 100000]

(under `python -m shop.devstack exec --` when the servers are not running). One
customer with that many orders (set-based SQL, no outbox backlog), then one
CustomerUpdated command. orders_search must rewrite every one of those orders'
documents. Each figure is the peak RSS of a fresh process:
- idle: Django set up, nothing loaded (the floor);
- paged: the runner projects the row (pages of READMODELS_BATCH_SIZE orders);
- all at once: the documents built the way the projector did before paging
  (`projector.load`: every order, its lines and its document in memory together),
  not written.
Elasticsearch figures come from the ES-compatible dev server.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchdb  # noqa: E402

DATABASE, NAMESPACE = "shop_bench_manyorders", "benchmanyorders"


def child(mode: str) -> None:
    benchdb.setup(DATABASE, NAMESPACE)
    from orders.models import Customer
    from readmodels import projectors
    from readmodels.pipeline import runner

    projector = projectors.get("orders_search")
    started = time.monotonic()
    documents = 0
    if mode == "paged":
        result = runner.run_segment(projector, ignore_backoff=True)
        assert result.complete and result.rows == 1, result
        documents = Customer.objects.get().orders.count()
    elif mode == "all-at-once":
        customer = Customer.objects.get()
        documents = len(projector.load({f"customer:{customer.pk}"}))
    print(json.dumps({
        "mode": mode,
        "documents": documents,
        "seconds": round(time.monotonic() - started, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--child", choices=["idle", "paged", "all-at-once"])
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    benchdb.setup(DATABASE, NAMESPACE)
    from orders import commands
    from orders.models import Customer
    from readmodels import projectors
    from readmodels.pipeline import runner

    benchdb.truncate()
    benchdb.reset_views()
    benchdb.bulk_shop(customers=1, products=10, orders=args.orders, outbox=False)
    projector = projectors.get("orders_search")
    runner.run_segment(projector, ignore_backoff=True)  # checkpoint to the horizon
    customer = Customer.objects.get()
    commands.update_customer(customer_id=customer.pk, name="Renamed With Many Orders")
    for mode in ("idle", "all-at-once", "paged"):
        out = subprocess.run([sys.executable, __file__, "--child", mode],
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
