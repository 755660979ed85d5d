"""``graphhook worker`` modes: forking (default), ``--simple`` and ``--processes N`` all process mail."""

from __future__ import annotations

import json

import pytest

from receiver import keys
from tests.conftest import wait_for
from workers import runtime, subscriptions


@pytest.mark.parametrize("mode", [(), ("--simple",), ("--processes", "2")])
def test_each_worker_mode_fires_the_trigger(emulator, live_settings, redis_client, start_worker, mode):
    emulator.add_user("secops@contoso.com")
    subscriptions.create(runtime.build(live_settings, redis_client).graph, redis_client, live_settings,
                         "secops@contoso.com", "inbox")
    start_worker(*mode)
    emulator.deliver("secops@contoso.com", {"subject": f"mode {' '.join(mode) or 'fork'}", "from": "a@example.com"})
    events = wait_for(lambda: redis_client.lrange(keys.EVENTS, 0, -1), timeout=60)
    assert json.loads(events[0])["email"]["subject"] == f"mode {' '.join(mode) or 'fork'}"


def test_processes_must_be_positive(capsys):
    from graphhook.cli import main

    assert main(["worker", "--processes", "-1"]) == 2
    assert "--processes must be at least 1" in capsys.readouterr().err


def test_worker_refuses_to_start_on_a_broken_configuration(emulator, live_settings, tmp_path):
    import os
    import subprocess
    import sys

    config = tmp_path / "graphhook.yaml"
    config.write_text("rules:\n  - name: broken\n    when: {subject: '('}\n    actions: [{move: Quarantine}]\n")
    env = {**os.environ, **emulator.environment(), "REDIS_URL": live_settings.redis_url,
           "GRAPHHOOK_CONFIG": str(config)}
    done = subprocess.run([sys.executable, "-m", "graphhook", "worker", "--burst"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "broken" in done.stderr and str(config) in done.stderr
