"""`make demo` shows the window it is about: on a quiet machine the views catch up in
milliseconds, before any read comes, so the demo holds the projector open on purpose.

Run for real: the demo script against a uvicorn server, a Celery worker and beat on
this run's database, as `make demo` runs against `make run`.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model

from readmodels import projectors
from tests.support import ROOT
from tests.support.processes import celery_beat_process, celery_worker_process, worker_env
from tests.support.readside import project_all
from tests.support.servers import uvicorn_server

pytestmark = pytest.mark.django_db(transaction=True)


def step(output: str, title: str) -> str:
    """The lines of one step of the story: its title line and what follows, to the next."""
    match = re.search(rf"^  t=[\d ,]+ ms  {re.escape(title)}\n((?:               .*\n)+)", output, re.M)
    assert match, f"no step {title!r} in:\n{output}"
    return match.group(1)


def test_the_demo_shows_a_stale_read_then_the_token_and_session_reads_on_one_clock(
    read_models, make_customer
):
    get_user_model().objects.create_superuser("demo-staff", "staff@example.com", "staff-pw")
    customer = make_customer(balance_cents=100_000, password="customer-pw")
    project_all()
    generous = {f"SLO_SECONDS_{name.upper()}": "600" for name in projectors.PROJECTORS}
    with (
        uvicorn_server(DJANGO_DEBUG="true", **generous) as port,
        celery_worker_process("demo"),
        celery_beat_process(),
    ):
        result = subprocess.run(
            [sys.executable, "bench/lag_window_demo.py"], cwd=ROOT, capture_output=True,
            text=True, timeout=240,
            env=worker_env(BASE_URL=f"http://127.0.0.1:{port}", DEMO_USER="demo-staff",
                           DEMO_PASSWORD="staff-pw", DEMO_CUSTOMER=customer.email,
                           DEMO_CUSTOMER_PASSWORD="customer-pw"),
        )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert "the demo holds the order_summary projector" in output

    # Plain words first, the headers after, for each read.
    other = step(output, "another user (staff) reads the order's summary")
    assert "does not show it (404" in other and "headers: X-Consistency: eventual" in other
    stale = step(output, "the customer reads it asking for the fastest answer (?consistency=none)")
    assert "stale" in stale.split("headers:")[0] and "X-Stale: true" in stale
    token = step(output, "the customer reads it again, sending the order's token")
    assert "It shows the order, after waiting" in token
    assert "X-Consistency-Source: request" in token and "X-Stale: false" in token
    assert int(re.search(r"X-Consistency-Wait-Ms: (\d+)", token)[1]) >= 500  # it waited
    session = step(output, "the customer reads it once more, sending no token at all")
    assert "It shows the order" in session and "X-Consistency-Source: session" in session
    dashboard = step(output, "the customer reads the dashboard, sending no token")
    assert "X-Consistency-Source: session" in dashboard
    assert int(re.search(r"X-Consistency-Wait-Ms: (\d+)", dashboard)[1]) >= 500

    # One clock from the first step to the last: it never starts again.
    times = [int(t.replace(",", "")) for t in re.findall(r"^  t=\s*([\d,]+) ms", output, re.M)]
    assert len(times) >= 10 and times == sorted(times) and times[0] < 1_000, times
