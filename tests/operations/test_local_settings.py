"""What a developer's shell cannot change by accident: the suite keeps its own names,
and beat does not bury `make run`'s banner under a line per sweep."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.processes import celery_beat_process
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

_PRINT_NAMES = (
    "import django; django.setup(); from django.conf import settings; "
    "print(settings.READMODELS['NAMESPACE'], "
    "settings.CELERY_BROKER_TRANSPORT_OPTIONS['global_keyprefix'])"
)


def test_the_test_settings_keep_their_own_namespace_whatever_the_shell_exports():
    env = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "shop.settings_test", "TEST_RUN_ID": "4242",
        # What a shell that ran `make run` with a namespace of its own still exports.
        "READMODELS_NAMESPACE": "shop",
    }
    result = subprocess.run([sys.executable, "-c", _PRINT_NAMES], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["test4242", "test4242:"]


def test_beat_sends_the_sweep_every_second_without_a_line_for_each(read_models):
    import redis
    from django.conf import settings

    # The broker queue this run's beat sends to (its key prefix is the namespace's).
    queue = f"{settings.CELERY_BROKER_TRANSPORT_OPTIONS['global_keyprefix']}celery"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete(queue)
    try:
        # The command line `make run` starts beat with, at its log level.
        with celery_beat_process() as beat:
            wait_until(lambda: broker.llen(queue) >= 3, timeout=60, process=beat,
                       message="beat sent no sweeps")
            output = beat.log_path.read_text(errors="replace")
    finally:
        broker.delete(queue)
    assert "celery beat v" in output  # the banner is still there
    assert "Sending due task" not in output, output[-2000:]
