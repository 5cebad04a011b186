"""`manage.py projections status`: a row per segment, exit 1 and a warning past an SLO."""

from __future__ import annotations

import json
import logging

import pytest

from readmodels import config, projectors
from tests.support.operating import age_outbox, projections_command, status_lines
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
