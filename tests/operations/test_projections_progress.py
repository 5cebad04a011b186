"""`projections rebuild` and `reconcile` progress: plain lines off a terminal, a bar on one.

Docker logs and log files are not terminals: a carriage-return bar there is one long
line that only shows its end. Each tenth of the work gets its own line instead.
"""

import io
import os
import re

import pytest
from django.core.management import call_command

from tests.support.readside import project_all

pytestmark = pytest.mark.django_db(transaction=True)
LINE = re.compile(r"^(rebuild|reconcile) products_search: (\d+)/(\d+) documents \((\d+)%\)")


@pytest.fixture
def catalogue(read_models, make_product):
    for _ in range(25):
        make_product()
    project_all()


def progress_lines(output: str) -> list[tuple[int, int, int]]:
    return [
        (int(m[2]), int(m[3]), int(m[4]))
        for m in (LINE.match(line) for line in output.splitlines())
        if m
    ]


@pytest.mark.parametrize("action", ["rebuild", "reconcile"])
def test_off_a_terminal_progress_is_plain_lines(catalogue, action):
    out = io.StringIO()
    call_command("projections", action, "products_search", "--batch-size", "5", stdout=out)
    output = out.getvalue()

    assert "\r" not in output
    lines = progress_lines(output)
    assert len(lines) >= 3, output
    assert all(total == 25 for _, total, _ in lines)
    done = [d for d, _, _ in lines]
    assert done == sorted(done) and done[-1] == 25
    assert lines[-1][2] == 100
    if action == "rebuild":
        # A rate, and from it the time left, on every line before the end.
        unfinished = [line for line in output.splitlines() if LINE.match(line) and "100%" not in line]
        assert unfinished and all(re.search(r"documents/s, about [\d.]+ s left$", line)
                                  for line in unfinished), output


def test_on_a_terminal_progress_is_a_bar(catalogue):
    leader, follower = os.openpty()
    terminal = os.fdopen(follower, "w")
    try:
        call_command(
            "projections", "rebuild", "products_search", "--batch-size", "5", stdout=terminal
        )
        terminal.flush()
        output = os.read(leader, 65536).decode()
    finally:
        terminal.close()
        os.close(leader)

    assert "\r  [" in output and "25/25 documents" in output
    assert not progress_lines(output.replace("\r", "\n"))
