"""Schemathesis against /api/schema/ on a running server, with its contract checks.

No 5xx; every status, header and body as declared; schema-valid requests accepted and
schema-invalid ones refused; required headers required; undeclared methods 405.
schemathesis.toml beside this file turns the checks on and says where one cannot hold
by the schema alone. `make test` runs a bounded number of examples per operation;
`make fuzz` runs more (FUZZ_MAX_EXAMPLES).
"""

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from knox.models import AuthToken

from orders import commands
from readmodels.api.views import encode_cursor
from tests.support.readside import project_all
from tests.support.servers import uvicorn_server
from tests.support.staff import shipped_group, shipped_groups

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_finds_no_server_errors_and_no_schema_violations(read_models, tmp_path):
    staff = get_user_model().objects.create_user("fuzz-staff", password="x", is_staff=True)
    # Every staff power, so the examples reach past the permission checks.
    staff.groups.add(*[shipped_group(name) for name in shipped_groups()])
    _, token = AuthToken.objects.create(user=staff)
    customer = commands.register_customer(email="fuzz@example.com", name="Fuzz").value
    customer_token = commands.top_up_balance(customer_id=customer.pk, amount_cents=100_000).token
    product = commands.create_product(sku="FUZZ-1", name="Fuzz kettle", category="fuzz",
                                      price_cents=100, stock=1000).value
    order = commands.place_order(
        customer_id=customer.pk, lines=[commands.LineRequest(product_id=product.pk, quantity=1)]
    ).value
    examples = os.environ.get("FUZZ_MAX_EXAMPLES", "25")
    # Projectors keep running, so views stay inside their SLO and answer (not 503).
    stop = threading.Event()

    def keep_projecting():
        try:
            while not stop.is_set():
                project_all()
                stop.wait(0.3)
        finally:
            connection.close()

    projecting = threading.Thread(target=keep_projecting, daemon=True)
    projecting.start()
    binary = shutil.which("schemathesis", path=os.path.dirname(sys.executable)) or "schemathesis"
    # This checks the API's contract, not lag: generous SLOs keep a slow moment of the
    # projector thread from turning reads into (correct, but here unwanted) 503s; and
    # throttles far above the run's rate let its requests reach the views (429 itself
    # is declared, and checked by test_declared_rules.py).
    slos = {f"SLO_SECONDS_{name.upper()}": "3600" for name in
            ["products_search", "orders_search", "order_summary", "customer_dashboard",
             "order_stats"]}
    rates = {f"THROTTLE_RATE_{scope}": "100000/min" for scope in
             ["LOGIN_ADDRESS", "LOGIN_ACCOUNT", "ANON_READ", "COMMANDS", "STREAM"]}
    # Values the run cannot make up (schemathesis.toml says why).
    opaque = {
        "FUZZ_CONSISTENCY_TOKEN": customer_token,
        "FUZZ_CURSOR": encode_cursor([0, "0"]),
        "FUZZ_ORDER_ID": str(order.pk),
        "FUZZ_LOGOUT_TOKEN": AuthToken.objects.create(user=staff)[1],
    }
    # With a webhook secret the payment callback checks signatures (401), as deployed;
    # without one it would answer 503 payments_not_configured to every example.
    with uvicorn_server(**slos, **rates, PAYMENT_WEBHOOK_SECRET="fuzz-webhook-secret") as port:
        result = subprocess.run(
            [
                binary, "--config-file", str(CONFIG), "run", f"http://127.0.0.1:{port}/api/schema/",
                "--header", f"Authorization: Token {token}",
                "--max-examples", examples,
                "--phases", "examples,coverage,fuzzing",
                "--workers", "1",
                "--seed", "1",
                "--request-timeout", "30",
                "--suppress-health-check", "all",
            ],
            capture_output=True, text=True, timeout=900, cwd=tmp_path,
            env={**os.environ, **opaque},
        )
    stop.set()
    projecting.join(30)
    output = result.stdout + result.stderr
    if os.environ.get("FUZZ_OUT"):
        Path(os.environ["FUZZ_OUT"]).write_text(output)
    assert result.returncode == 0, output[-8000:]
