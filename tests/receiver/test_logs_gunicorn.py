"""The web process as production runs it (gunicorn + receiver.gunicorn_conf): every line it writes is JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import requests

from graphhook.redis_server import free_port
from tests.conftest import STARTUP_GRACE, answers, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_gunicorn_and_the_app_log_json_lines_without_secrets(redis_server, tmp_path):
    port = free_port()
    out = tmp_path / "web.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_server.url, "AZURE_TENANT_ID": "t1",
           "AZURE_CLIENT_ID": "c1", "AZURE_CLIENT_SECRET": "web-client-secret-3e9a1",
           "GRAPHHOOK_STATUS_TOKEN": "web-status-token-b7c2d"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with out.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}",
                                 "--access-logfile", "-", "-c", "python:receiver.gunicorn_conf",
                                 "receiver.app:create_app()"], env=env, cwd=ROOT, stdout=sink, stderr=sink)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: answers(f"{url}/healthz", proc), timeout=STARTUP_GRACE)
            assert requests.get(f"{url}/status", headers={"Authorization": "Bearer web-status-token-b7c2d"},
                                timeout=10).status_code == 200
            # A malformed notification is logged by the app (a warning) as well as in the access log.
            assert requests.post(f"{url}/notifications", data=b"{not json", timeout=10,
                                 headers={"Content-Type": "application/json"}).status_code == 400
        finally:
            stop_process(proc)
    lines = [line for line in out.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    loggers = {r["logger"] for r in records}
    assert {"gunicorn.error", "gunicorn.access", "graphhook.receiver"} <= loggers
    assert any(r["logger"] == "gunicorn.access" and "/status" in r["msg"] for r in records)
    assert all(r.get("process") == "web" for r in records if r["logger"].startswith("gunicorn"))
    text = out.read_text()
    assert "web-client-secret-3e9a1" not in text and "web-status-token-b7c2d" not in text
