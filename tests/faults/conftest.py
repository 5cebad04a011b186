"""The fault scenarios run a whole throwaway shop through an outage and its healing: their
own deadlines add up past the suite's default per-test timeout, so they get a longer one."""

from pathlib import Path

import pytest

FAULT_SCENARIO_TIMEOUT_SECONDS = 900
HERE = Path(__file__).resolve().parent


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # The stack fixture keeps its servers' logs when the scenario itself failed.
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"outcome_{report.when}", report)


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.path).resolve().parents and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(FAULT_SCENARIO_TIMEOUT_SECONDS))
