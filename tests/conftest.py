"""Shared fixtures: a real Redis on a free port, the real emulator over HTTPS, the receiver over HTTPS,
and real RQ worker processes. Nothing here mocks Graph: the emulator stands in for Microsoft's cloud."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import rq

from emulator import Emulator
from graphhook.core import jobformat
from graphhook.core.settings import Settings
from graphhook.devserver import BackgroundServer
from graphhook.redis_server import RedisServer
from receiver.app import create_app
from workers.shutdown import PromptShutdown

ROOT = Path(__file__).resolve().parent.parent


class InProcessWorker(PromptShutdown, rq.SimpleWorker):
    """RQ's SimpleWorker, running jobs in the test process, with the product's JSON job format and prompt teardown.

    RQ's own class can wait out its 60 s pub/sub poll when ``work(burst=True)`` ends (workers/shutdown.py).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**jobformat.WORKER_OPTIONS, **kwargs})


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def emulator(tmp_path, monkeypatch):
    emu = Emulator(tmp_path / "emulator").start()
    # MSAL and requests in the test process trust the emulator's CA (graph-protocol.md §6: the env var wins).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emu.ca_path))
    yield emu
    emu.stop()


@pytest.fixture
def settings(emulator, redis_server):
    return Settings.from_env({**emulator.environment(), "REDIS_URL": redis_server.url,
                              "PUBLIC_URL": "https://127.0.0.1"})


@pytest.fixture
def receiver(emulator, settings, redis_client):
    """The receiver served over HTTPS (certificate from the emulator's CA) on a free port."""
    app = create_app(settings, redis_client=redis_client)
    pair = emulator.ca.issue("receiver")
    server = BackgroundServer(app, cert=pair.cert_path, key=pair.key_path).start()
    server.app = app
    yield server
    server.stop()


@pytest.fixture
def live_settings(settings, receiver):
    """Settings whose PUBLIC_URL is the running receiver."""
    return settings.replace(public_url=receiver.url)


def worker_env(settings: Settings, emulator: Emulator) -> dict[str, str]:
    env = {**os.environ, **emulator.environment(), "REDIS_URL": settings.redis_url,
           "PUBLIC_URL": settings.public_url, "GRAPHHOOK_QUEUE": settings.queue_name}
    if settings.config_path != Settings().config_path:
        env["GRAPHHOOK_CONFIG"] = str(Path(settings.config_path).resolve())
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.fixture
def start_worker(live_settings, emulator, tmp_path):
    """Start real ``graphhook worker`` processes; all are stopped at teardown."""
    procs: list[subprocess.Popen] = []

    def start(*extra: str, settings: Settings | None = None) -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(procs)}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "graphhook", "worker", *extra],
                                env=worker_env(settings or live_settings, emulator), stdout=log, stderr=log)
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


EXIT_GRACE = 60.0  # s a process has to exit after SIGTERM: a guard against hangs (under the 120 s test timeout)


def stop_process(proc: subprocess.Popen, *, grace: float = EXIT_GRACE) -> int:
    """SIGTERM ``proc`` and wait until it has exited; its return code.

    One still alive after ``grace`` is killed, with its process group when it leads one (a worker pool and
    its children), and the test fails saying so.
    """
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait()
        raise AssertionError(f"{proc.args!r} (pid {proc.pid}) did not exit within {grace:.0f} s of SIGTERM") from None


STARTUP_GRACE = 120.0  # s a server we started has to answer: a guard against hangs, far beyond a busy machine's delays


def answers(url: str, proc: subprocess.Popen | None = None) -> bool:
    """Whether ``url`` answers 200 now; a server still starting (refused, or too slow to answer) is "not yet".

    For :func:`wait_for`; fails at once if ``proc``, the server, has exited.
    """
    assert proc is None or proc.poll() is None, f"{proc.args!r} exited with {proc.returncode}"
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:  # ConnectionError while it binds; ReadTimeout while a worker boots
        return False


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value; fail the test on timeout (a hang guard, not a budget)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@dataclass
class TwoTenants:
    """Two customer tenants in one emulator, watched by one graphhook (docs/tenants.md).

    ``contoso`` is the emulator's own tenant (alice@contoso.com), ``fabrikam`` another (carol@fabrikam.com);
    one multi-tenant app (the emulator's, the environment's AZURE_CLIENT_ID) is consented in both.
    ``settings`` points GRAPHHOOK_CONFIG at a YAML declaring both; ``write(extra)`` rewrites it.
    """

    a: Any
    b: Any
    settings: Settings
    path: Path

    def write(self, rules: str = "", contoso: str = "", fabrikam: str = "", top: str = "") -> None:
        self.path.write_text(
            f"version: 1\n{top}rules:\n{rules or '  []'}\ntenants:\n"
            f"  contoso:\n    tenant_id: {self.a.tenant_id}\n    mailboxes: [alice@contoso.com]\n{contoso}"
            f"  fabrikam:\n    tenant_id: {self.b.tenant_id}\n    mailboxes: [carol@fabrikam.com]\n{fabrikam}")

    def one_app_per_customer(self, emulator: Any, monkeypatch: Any) -> tuple[Any, Settings]:
        """Give each tenant an app of its own under ``apps:`` (secrets in the environment); return fabrikam's
        app and the settings of an environment that names no app at all."""
        own = self.b.add_app()
        monkeypatch.setenv("FABRIKAM_APP_SECRET", own.secret)
        monkeypatch.setenv("CONTOSO_APP_SECRET", emulator.app_registration.secret)
        self.write(top=f"apps:\n  contoso-app: {{client_id: {emulator.client_id}, secret_env: CONTOSO_APP_SECRET}}\n"
                       f"  fabrikam-app: {{client_id: {own.client_id}, secret_env: FABRIKAM_APP_SECRET}}\n",
                   contoso="    app: contoso-app\n", fabrikam="    app: fabrikam-app\n")
        return own, self.settings.replace(tenant_id="", client_id="", client_secret="")


@pytest.fixture
def two_tenants(emulator, live_settings, tmp_path):
    emulator.app_registration.multi_tenant = True
    b = emulator.add_tenant()
    emulator.consent(emulator.app_registration, b)
    emulator.add_user("alice@contoso.com", "Alice")
    b.add_user("carol@fabrikam.com", "Carol Diaz")
    path = tmp_path / "tenants.yaml"
    tenants = TwoTenants(emulator.tenant(), b, live_settings.replace(config_path=str(path)), path)
    tenants.write()
    return tenants
