"""The receiver as production runs it: gunicorn with two (recycled) worker processes and multiprocess metrics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from graphhook.redis_server import free_port
from tests.conftest import answers, wait_for

from .conftest import change, register

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gunicorn(redis_server, redis_client, tmp_path):
    port = free_port()
    prom = tmp_path / "prom"
    prom.mkdir()
    (prom / "counter_stale.db").write_bytes(b"left over from an earlier run")  # on_starting must wipe it
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_server.url, "AZURE_TENANT_ID": "t1",
           "AZURE_CLIENT_ID": "c1", "PROMETHEUS_MULTIPROC_DIR": str(prom)}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "--max-requests", "25",
                             "-c", "python:receiver.gunicorn_conf", "receiver.app:create_app()"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group: teardown stops workers too
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{url}/healthz", proc), timeout=60)
    yield url, prom
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_metrics_add_up_across_worker_processes(gunicorn, redis_client):
    gunicorn, prom = gunicorn
    register(redis_client, "t1")
    def handshake(i: int) -> int:
        return requests.post(f"{gunicorn}/notifications", params={"validationToken": f"token {i}"}, timeout=5).status_code

    with ThreadPoolExecutor(8) as pool:  # concurrent, so that both sync workers take some
        assert set(pool.map(handshake, range(80))) == {200}
    for i in range(6):  # separate connections: gunicorn's sync workers take turns
        assert requests.post(f"{gunicorn}/notifications", json={"value": [change("t1", message=f"m{i}")]},
                             timeout=5).status_code == 202
    assert requests.get(f"{gunicorn}/readyz", timeout=5).status_code == 200
    for _ in range(4):  # whichever worker answers, the totals are the same
        text = requests.get(f"{gunicorn}/metrics", timeout=5).text
        assert "graphhook_validation_handshakes_total 80.0" in text
        assert 'graphhook_notifications_accepted_total{kind="change"} 6.0' in text
        assert "graphhook_intake_seconds_count 6.0" in text
    assert not (prom / "counter_stale.db").exists()
    # Workers are recycled every 25 requests, so several processes (each with its own file) were summed.
    assert len({f.stem.split("_")[-1] for f in prom.glob("counter_*.db")}) >= 3
