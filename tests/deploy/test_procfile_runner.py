"""The Procfile's processes, started by a Procfile runner (honcho, as ``heroku local`` does), carry mail
end to end against the emulator: renewer subscribes, web answers the handshake and takes notifications,
two worker processes share the queue and fire each message's trigger exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rq import Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry

from graphhook.core import jobformat, keys
from graphhook.redis_server import free_port
from tests.conftest import ROOT, wait_for

HONCHO = shutil.which("honcho", path=str(Path(sys.executable).parent)) or shutil.which("honcho")
MESSAGES = 8


@pytest.fixture
def procfile_env(emulator, redis_server, redis_client, tmp_path):
    """Settings as Heroku would hold them; TLS in front of gunicorn stands in for Heroku's router."""
    emulator.add_user("alice@contoso.com")
    config = tmp_path / "graphhook.yaml"
    config.write_text("mailboxes:\n  - alice@contoso.com\n")
    cert = emulator.ca.issue("web")
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    return port, {
        **os.environ, **emulator.environment(),
        "REDIS_URL": redis_server.url, "PUBLIC_URL": f"https://127.0.0.1:{port}",
        "GRAPHHOOK_CONFIG": str(config), "GRAPHHOOK_QUEUE": "graphhook", "GRAPHHOOK_RENEW_INTERVAL_SECONDS": "1",
        "WEB_CONCURRENCY": "1", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "GUNICORN_CMD_ARGS": f"--certfile={cert.cert_path} --keyfile={cert.key_path}",
        "PYTHONPATH": str(ROOT), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }


@pytest.mark.skipif(HONCHO is None, reason="honcho (a Procfile runner, in the dev extra) is not installed")
def test_procfile_processes_carry_mail_end_to_end(procfile_env, emulator, redis_client, tmp_path):
    port, env = procfile_env
    log = open(tmp_path / "honcho.log", "wb")
    runner = subprocess.Popen(
        [HONCHO, "start", "-f", str(ROOT / "Procfile"), "-d", str(ROOT), "-p", str(port),
         "-c", "web=1,worker=2,renewer=1", "web", "worker", "renewer"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def output() -> str:
        return (tmp_path / "honcho.log").read_text(errors="replace")

    try:
        # The renewer subscribed; the emulator ran the handshake against gunicorn before answering 201.
        wait_for(lambda: emulator.subscriptions.items or runner.poll() is not None, timeout=60)
        assert runner.poll() is None, output()
        sub = next(iter(emulator.subscriptions.items.values()))
        assert sub.notification_url == f"https://127.0.0.1:{port}/notifications"

        sent = [emulator.deliver("alice@contoso.com", {"subject": f"Invoice {i}", "from": "bob@fabrikam.com"})
                for i in range(MESSAGES)]
        wait_for(lambda: redis_client.llen(keys.EVENTS) >= MESSAGES, timeout=90)

        # Drained: nothing waiting, nothing running, nothing failed; then count exactly.
        queue = jobformat.queue("graphhook", redis_client)
        wait_for(lambda: queue.count == 0 and StartedJobRegistry(queue=queue).count == 0, timeout=30)
        assert FailedJobRegistry(queue=queue).count == 0, output()
        events = [json.loads(e) for e in redis_client.lrange(keys.EVENTS, 0, -1)]
        ids = [e["email"]["id"] for e in events]
        assert sorted(ids) == sorted(m["_immutableId"] for m in sent)  # each message once, none twice
        assert {e["email"]["subject"] for e in events} == {f"Invoice {i}" for i in range(MESSAGES)}
        # Two worker processes shared the queue (RQ registers each one that listens on it).
        workers = Worker.all(queue=queue)
        assert len(workers) == 2, output()
        assert sum(w.successful_job_count for w in workers) >= 1
    finally:
        if runner.poll() is None:
            runner.send_signal(signal.SIGTERM)  # honcho passes it on to every process
            try:
                runner.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(runner.pid, signal.SIGKILL)
                runner.wait()
        log.close()
