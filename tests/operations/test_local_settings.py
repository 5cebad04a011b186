"""What a developer's shell cannot change by accident: the suite keeps its own names,
and beat does not bury `make run`'s banner under a line per sweep."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shop.devstack import stack_commands
from tests.support import ROOT
from tests.support.processes import worker_env
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


def test_beat_sends_the_sweep_every_second_without_a_line_for_each(tmp_path, read_models):
    import redis
    from django.conf import settings

    # The broker queue this run's beat sends to (its key prefix is the namespace's).
    queue = f"{settings.CELERY_BROKER_TRANSPORT_OPTIONS['global_keyprefix']}celery"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete(queue)
    log_path = tmp_path / "beat.log"
    # The command line `make run` starts beat with, at its log level.
    command = stack_commands(port=0, schedule=tmp_path / "beat-schedule")["beat"]
    with open(log_path, "wb") as log:
        beat = subprocess.Popen(command, cwd=ROOT, env=worker_env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: broker.llen(queue) >= 3, timeout=60, process=beat,
                   message="beat sent no sweeps")
    finally:
        beat.terminate()
        beat.wait(30)
        broker.delete(queue)
    output = log_path.read_text(errors="replace")
    assert "celery beat v" in output  # the banner is still there
    assert "Sending due task" not in output, output[-2000:]
