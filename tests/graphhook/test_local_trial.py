"""The documented local trial, run as written (docs/development.md#trying-it-by-hand): ``graphhook emulator``
writes graphhook.env; web (HTTPS with the emulator's receiver certificate), worker and renewer run from that
environment; a message sent with ``graphhook mail send`` is fetched and recorded by the worker."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys

import redis

from graphhook.core import keys
from tests.conftest import ROOT, answers, stop_process, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sourced(env_file) -> dict[str, str]:
    """What ``. graphhook.env`` exports."""
    out = {}
    for line in env_file.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            out[name] = shlex.split(value)[0]
    return out


def test_emulator_web_worker_renewer_by_hand(redis_server, tmp_path, monkeypatch):
    work, web_port = tmp_path / "emulator", free_port()
    base = {**os.environ, "PYTHONPATH": str(ROOT), "GRAPHHOOK_METRICS_PORT": "0"}
    base.pop("GRAPHHOOK_CONFIG", None)
    procs: list[subprocess.Popen] = []

    def start(*argv: str, env: dict[str, str], name: str) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "graphhook", *argv], env=env, stdout=log, stderr=log)
        procs.append(proc)
        return proc

    try:
        emulator = start("emulator", "--port", str(free_port()), "--workdir", str(work), "--json",
                         "--redis-url", redis_server.url, "--public-url", f"https://127.0.0.1:{web_port}",
                         env=base, name="emulator")
        wait_for(lambda: (tmp_path / "emulator.log").read_text().strip(), timeout=120)
        shown = json.loads((tmp_path / "emulator.log").read_text().splitlines()[0])
        env = {**base, **sourced(work / "graphhook.env")}
        assert env["REDIS_URL"] == redis_server.url and env["PUBLIC_URL"] == f"https://127.0.0.1:{web_port}"
        assert "alice@contoso.com" in (work / "graphhook.yaml").read_text()
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", env["REQUESTS_CA_BUNDLE"])

        web = start("web", "--port", str(web_port), "--cert", shown["receiverCert"], "--key", shown["receiverKey"],
                    env=env, name="web")
        wait_for(lambda: answers(f"https://127.0.0.1:{web_port}/healthz", web), timeout=120)
        start("worker", env=env, name="worker")
        renewer = subprocess.run([sys.executable, "-m", "graphhook", "renewer", "--once"], env=env,
                                 capture_output=True, text=True, timeout=120)
        assert renewer.returncode == 0, renewer.stderr[-2000:]
        listed = subprocess.run([sys.executable, "-m", "graphhook", "subscriptions", "list", "--json"], env=env,
                                capture_output=True, text=True, timeout=120)
        assert {row["mailbox"] for row in json.loads(listed.stdout)} >= {"alice@contoso.com"}

        sent = subprocess.run([sys.executable, "-m", "graphhook", "mail", "send", "--mailbox", "bob@contoso.com",
                               "--to", "alice@contoso.com", "--subject", "hello from the local trial"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr[-2000:]
        r = redis.Redis.from_url(redis_server.url)

        def recorded() -> bool:
            return any(json.loads(e).get("email", {}).get("subject") == "hello from the local trial"
                       for e in r.lrange(keys.EVENTS, 0, -1))

        wait_for(recorded, timeout=120)
        assert emulator.poll() is None
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        r = redis.Redis.from_url(redis_server.url)
        r.flushdb()
        r.close()
