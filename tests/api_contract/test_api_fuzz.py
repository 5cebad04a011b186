"""Schemathesis against /api/schema/ on a running server: no 500s, responses match the schema.

`make test` runs a bounded number of examples per operation; `make fuzz` runs more
(FUZZ_MAX_EXAMPLES).
"""

import os
import shutil
import subprocess
import sys
import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from knox.models import AuthToken

from orders import commands
from tests.support.readside import project_all
from tests.support.servers import uvicorn_server
from tests.support.staff import shipped_group, shipped_groups

pytestmark = pytest.mark.django_db(transaction=True)


def test_schemathesis_finds_no_server_errors_and_no_schema_violations(read_models, tmp_path):
    staff = get_user_model().objects.create_user("fuzz-staff", password="x", is_staff=True)
    # Every staff power, so the examples reach past the permission checks.
    staff.groups.add(*[shipped_group(name) for name in shipped_groups()])
    _, token = AuthToken.objects.create(user=staff)
    customer = commands.register_customer(email="fuzz@example.com", name="Fuzz").value
    commands.top_up_balance(customer_id=customer.pk, amount_cents=100_000)
    commands.create_product(sku="FUZZ-1", name="Fuzz kettle", category="fuzz", price_cents=100,
                            stock=1000)
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
    # projector thread from turning reads into (correct, but here unwanted) 503s.
    slos = {f"SLO_SECONDS_{name.upper()}": "3600" for name in
            ["products_search", "orders_search", "order_summary", "customer_dashboard",
             "order_stats"]}
    # With a webhook secret the payment callback checks signatures (401), as deployed;
    # without one it would answer 503 payments_not_configured to every example.
    with uvicorn_server(**slos, PAYMENT_WEBHOOK_SECRET="fuzz-webhook-secret") as port:
        result = subprocess.run(
            [
                binary, "run", f"http://127.0.0.1:{port}/api/schema/",
                "--checks", "not_a_server_error,status_code_conformance,"
                "content_type_conformance,response_headers_conformance,"
                "response_schema_conformance",
                "--header", f"Authorization: Token {token}",
                "--max-examples", examples,
                "--phases", "examples,coverage,fuzzing",
                "--workers", "1",
                "--seed", "1",
                "--request-timeout", "30",
                "--suppress-health-check", "all",
            ],
            capture_output=True, text=True, timeout=900, cwd=tmp_path,
        )
    stop.set()
    projecting.join(30)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
