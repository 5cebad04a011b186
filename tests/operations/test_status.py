"""`manage.py projections status`: a row per segment in words and seconds, exit 1 and a
warning (after the table) past an SLO; every option of the command documented."""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys

import pytest

from readmodels import config, projectors
from readmodels.management.commands.projections import Command
from tests.support import ROOT
from tests.support.operating import age_outbox, projections_command, status_lines
from tests.support.processes import worker_env
from tests.support.readside import project_all

pytestmark = pytest.mark.django_db(transaction=True)


def test_status_is_ok_when_every_projector_has_caught_up(read_models, make_order):
    make_order()
    project_all()

    code, output = projections_command("status")

    assert code == 0, output
    rows = status_lines(output)
    assert set(rows) == set(projectors.PROJECTORS)
    for name, lines in rows.items():
        assert len(lines) == config.segments(name)
        assert all(" ok " in line for line in lines), lines
    assert "breach" not in output


def test_status_exits_1_and_warns_when_a_view_is_past_its_slo(
    read_models, make_order, make_product, caplog
):
    make_order()
    project_all()
    make_product()  # a product row only products_search consumes, never projected
    age_outbox("10 seconds")

    with caplog.at_level(logging.WARNING, logger="readmodels.slo"):
        code, output = projections_command("status")

    assert code == 1, output
    rows = status_lines(output)
    assert set(rows) == set(projectors.PROJECTORS)
    breached = {name for name, lines in rows.items() if any(" breach " in line for line in lines)}
    assert breached == {"products_search"}
    for name in set(projectors.PROJECTORS) - breached:
        assert all(" ok " in line for line in rows[name]), rows[name]
    warnings = [
        r for r in caplog.records if r.name == "readmodels.slo" and r.levelno == logging.WARNING
    ]
    assert any("products_search" in r.getMessage() for r in warnings), warnings
    assert all("breached" in r.getMessage() for r in warnings)

    code, output = projections_command("status", "--json")
    assert code == 1
    by_model: dict[str, list[dict]] = {}
    for entry in json.loads(output):
        by_model.setdefault(entry["read_model"], []).append(entry)
    assert set(by_model) == set(projectors.PROJECTORS)
    behind = by_model["products_search"]
    assert sum(e["rows_behind"] for e in behind) == 1
    assert max(e["lag_seconds"] for e in behind) >= 9.0
    assert any(e["state"] == "breach" for e in behind)
    for name in ("order_summary", "customer_dashboard", "orders_search"):
        for entry in by_model[name]:
            assert (entry["rows_behind"], entry["lag_seconds"], entry["state"]) == (0, 0.0, "ok")

    project_all()
    assert projections_command("status")[0] == 0


def test_the_table_says_rows_behind_and_ages_not_raw_positions(read_models, make_order, make_product):
    make_order()
    project_all()
    make_product()
    age_outbox("75 seconds")

    _, output = projections_command("status")

    rows = status_lines(output)
    assert not re.search(r"\d+:\d{6,}", output), output  # no xid:position
    (products,) = rows["products_search"]
    assert "1 row behind" in products and re.search(r" 1 min 1\d s ", products), products
    assert "caught up" in rows["order_summary"][0] and " ago " in rows["order_summary"][0]
    assert "past the lag SLO" in output


def test_breach_warnings_come_after_the_table_not_inside_it(read_models, make_order, make_product):
    make_order()
    project_all()
    make_product()
    age_outbox("10 seconds")

    # stderr (the JSON log) and stdout (the table) on one stream, as a terminal shows them.
    result = subprocess.run(
        [sys.executable, "manage.py", "projections", "status"], cwd=ROOT, env=worker_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stdout
    lines = result.stdout.splitlines()
    table = [i for i, line in enumerate(lines) if line.split(" ", 1)[0] in projectors.PROJECTORS]
    logs = [i for i, line in enumerate(lines) if line.startswith("{")]
    assert table and logs, result.stdout
    assert min(logs) > max(table), result.stdout
    assert any("lag SLO breached" in lines[i] for i in logs)


def test_every_option_of_every_action_says_what_it_does():
    command = Command()
    parser = command.create_parser("manage.py", "projections")
    (actions,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(actions.choices) == {"status", "rebuild", "reconcile", "restore", "deadletters"}
    for name, sub in actions.choices.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"projections {name} {action.option_strings or action.dest}"
