"""``graphhook worker`` modes: concurrent (default), ``--concurrency N``, ``--simple``, ``--fork`` and ``--processes N``
all process mail."""

from __future__ import annotations

import json

import pytest

from graphhook.core import keys
from tests.conftest import wait_for
from workers import runtime
from workers.subscriptions import operations


@pytest.mark.parametrize("mode", [(), ("--concurrency", "2"), ("--simple",), ("--fork",), ("--processes", "2")])
def test_each_worker_mode_fires_the_trigger(emulator, live_settings, redis_client, start_worker, mode, tmp_path):
    emulator.add_user("secops@contoso.com")
    operations.create(runtime.build(live_settings, redis_client).graph, redis_client, live_settings,
                         "secops@contoso.com", "inbox")
    start_worker(*mode)
    subject = f"mode {' '.join(mode) or 'concurrent'}"
    emulator.deliver("secops@contoso.com", {"subject": subject, "from": "a@example.com"})
    try:
        events = wait_for(lambda: redis_client.lrange(keys.EVENTS, 0, -1), timeout=60)
    except AssertionError as exc:  # say what the worker did
        logs = "".join(p.read_text()[-3000:] for p in tmp_path.glob("worker-*.log"))
        raise AssertionError(f"{exc}; jobs: {redis_client.keys('rq:*')[:20]}; worker log: {logs}") from exc
    assert json.loads(events[0])["email"]["subject"] == subject


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


@pytest.mark.parametrize("mode", [(), ("--processes", "2")])
def test_worker_refuses_to_start_with_unusable_decryption_keys(emulator, live_settings, tmp_path, mode):
    import os
    import subprocess
    import sys

    missing = tmp_path / "rich-key.pem"
    env = {**os.environ, **emulator.environment(), "REDIS_URL": live_settings.redis_url,
           "GRAPHHOOK_ENCRYPTION_KEYS": f"cert-1={missing}"}
    done = subprocess.run([sys.executable, "-m", "graphhook", "worker", "--burst", *mode], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert str(missing) in done.stderr


def test_worker_loads_decryption_keys_at_start(emulator, live_settings, tmp_path, caplog):
    from graphhook.core.settings import Settings
    from tests.receiver.conftest import make_key_pair
    from workers.records import rich

    path, _cert = make_key_pair(tmp_path)
    settings = Settings.from_env({**emulator.environment(), "REDIS_URL": live_settings.redis_url,
                                  "GRAPHHOOK_ENCRYPTION_KEYS": f"cert-1={path}"})
    with caplog.at_level("INFO", logger="graphhook.rich"):
        assert rich.preload(settings) == 1
    assert "loaded 1 rich-notification decryption key" in caplog.text
    assert rich.preload(Settings.from_env({**emulator.environment(), "REDIS_URL": live_settings.redis_url})) == 0
