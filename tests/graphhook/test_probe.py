"""``graphhook probe``: real worker and renewer processes against a real Redis, the real receiver for ``web``.

A probe must pass while the process runs and fail once it has stopped or died (SIGKILL leaves RQ's worker
hash behind until it expires: the probe must not be fooled by it), and ``auto`` must recognise the command
of every deploy file.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import socket
import subprocess
import sys

import pytest
import redis
import yaml

from graphhook.commands import probe
from graphhook.devserver import BackgroundServer
from graphhook.redis_server import free_port
from receiver.app import create_app
from tests.conftest import ROOT, stop_process, wait_for, worker_env
from tests.deploy.test_procfile import procfile


def run_probe(kind: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graphhook", "probe", kind], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def env(live_settings, emulator):
    return worker_env(live_settings, emulator)


def start(argv: list[str], env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "graphhook", *argv], env=env, stdout=log, stderr=log)


def own_command_line(pid: int) -> list[str]:
    """argv of ``pid`` as ``probe auto`` reads it (the machine's other processes are not ours to probe)."""
    return [a.decode() for a in open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0") if a]


def test_worker_probe_follows_a_real_worker_through_start_and_stop(env, redis_client, tmp_path):
    before = run_probe("worker", env)
    assert before.returncode == 1 and "no live RQ worker" in before.stderr
    with open(tmp_path / "worker.log", "ab") as log:
        worker = start(["worker"], env, log)
        try:
            wait_for(lambda: run_probe("worker", env).returncode == 0, timeout=60, interval=0.5)
            ok = run_probe("worker", env)
            assert f"pid {worker.pid}" in ok.stdout and "rq:worker:" in ok.stdout
            assert probe.detect([own_command_line(worker.pid)]) == ("worker", None)
        finally:
            assert stop_process(worker) == 0
    after = run_probe("worker", env)  # RQ removes its hash on a clean stop
    assert after.returncode == 1, after.stdout


def test_worker_probe_is_not_fooled_by_the_hash_a_killed_worker_leaves(env, redis_client, tmp_path):
    with open(tmp_path / "worker.log", "ab") as log:
        worker = start(["worker", "--simple"], env, log)
        wait_for(lambda: run_probe("worker", env).returncode == 0, timeout=60, interval=0.5)
        worker.kill()
        worker.wait()
    from rq import worker_registration

    keys = worker_registration.get_keys(connection=redis_client)
    assert keys, "RQ's worker hash outlives a SIGKILL until its heartbeat lapses"
    dead = run_probe("worker", env)
    assert dead.returncode == 1 and "none of a process running here" in dead.stderr


def test_a_worker_hash_older_than_the_process_holding_its_pid_is_stale(env, redis_client, tmp_path):
    # A restarted container: same host name, the new PID 1 is the old worker's pid, its hash has not expired.
    with open(tmp_path / "worker.log", "ab") as log:
        worker = start(["worker", "--simple"], env, log)
        try:
            wait_for(lambda: run_probe("worker", env).returncode == 0, timeout=60, interval=0.5)
            host = socket.gethostname()
            assert probe.probe_worker(redis_client, hostname=host)[0] is True
            later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)
            assert probe.probe_worker(redis_client, hostname=host, started=lambda pid: later)[0] is False
            assert probe.probe_worker(redis_client, hostname="another-pod")[0] is False
        finally:
            stop_process(worker)


def test_renewer_probe_follows_a_real_renewer(env, redis_client, tmp_path):
    config = tmp_path / "graphhook.yaml"
    config.write_text("mailboxes: []\n")
    env = {**env, "GRAPHHOOK_CONFIG": str(config)}
    assert run_probe("renewer", env).returncode == 1
    with open(tmp_path / "renewer.log", "ab") as log:
        renewer = start(["renewer"], env, log)
        try:
            wait_for(lambda: run_probe("renewer", env).returncode == 0, timeout=60, interval=0.5)
            ok = run_probe("renewer", env)
            assert f"renewer pid {renewer.pid}" in ok.stdout
            assert probe.detect([own_command_line(renewer.pid)]) == ("renewer", None)
            # Its record expires with the leader lock: 3 x the interval, at least 30 s.
            ttl = redis_client.ttl(f"graphhook:renewer:alive:{socket.gethostname()}")
            assert 0 < ttl <= 180
        finally:
            assert stop_process(renewer) == 0
    gone = run_probe("renewer", env)  # the record is still there, its process is not
    assert gone.returncode == 1 and "no longer runs here" in gone.stderr


def test_probes_fail_when_redis_does_not_answer(env):
    env = {**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    for kind in ("worker", "renewer"):
        failed = run_probe(kind, env)
        assert failed.returncode == 1 and "cannot read" in failed.stderr


def test_web_probe_reads_readyz_of_the_receiver(settings, redis_client):
    ready = BackgroundServer(create_app(settings, redis_client=redis_client)).start()
    broken = redis.Redis(port=free_port(), socket_connect_timeout=0.5)
    unready = BackgroundServer(create_app(settings, redis_client=broken)).start()
    try:
        assert probe.probe_web(f"{ready.url}/readyz")[0] is True
        ok, message = probe.probe_web(f"{unready.url}/readyz", timeout=30)  # Redis retries first
        assert not ok and "503" in message
        assert probe.probe_web(f"http://127.0.0.1:{free_port()}/readyz")[0] is False
    finally:
        ready.stop()
        unready.stop()


# --- auto: every deploy file's command is recognised ------------------------------------------

def deploy_commands() -> dict[str, list[str]]:
    """(where → argv as the process table shows it) for every long-running process of the deploy files."""
    found = {f"Procfile {name}": shlex.split(line.replace("${", "").replace("}", ""))
             for name, line in procfile().items() if name != "release"}
    for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "Deployment":
                container = doc["spec"]["template"]["spec"]["containers"][0]
                found[f"{path.name} {container['name']}"] = container["command"]
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    for name in ("worker", "renewer"):
        found[f"compose {name}"] = compose[name]["command"]
    return found


def expected_kind(where: str) -> str:
    return next(kind for kind in ("web", "worker", "renewer") if kind in where)


def test_auto_recognises_every_deploy_files_process():
    commands = deploy_commands()
    assert len(commands) >= 8
    for where, argv in commands.items():
        # A console script runs as `python /path/bin/graphhook …`; gunicorn likewise.
        as_seen = ["/usr/local/bin/python3.11", f"/usr/local/bin/{argv[0]}", *argv[1:]]
        kind, url = probe.detect([["/bin/sh"], as_seen])
        assert kind == expected_kind(where), where
        if kind == "web":
            assert url.startswith("http://127.0.0.1:") and url.endswith("/readyz"), url


def test_auto_reads_gunicorns_port_and_ignores_other_commands():
    assert probe.detect([["gunicorn", "app", "--bind", "0.0.0.0:5000"]]) == ("web", "http://127.0.0.1:5000/readyz")
    assert probe.detect([["gunicorn", "-b", "[::]:7000"]]) == ("web", "http://127.0.0.1:7000/readyz")
    assert probe.detect([["python", "-m", "workers.pool", "--processes", "2"]]) == ("worker", None)
    assert probe.detect([["graphhook", "check", "--config-only"], ["sleep", "5"]]) == (None, None)
    assert probe.detect([["python", "-m", "graphhook", "subscriptions", "renew"]]) == (None, None)


def test_process_start_is_this_process_start():
    began = probe.process_start(os.getpid())
    assert began is not None
    assert began <= dt.datetime.now(dt.timezone.utc)
    assert probe.process_start(2 ** 22 + 1) is None


def test_renewer_records_each_loop_with_its_own_clock_and_spaces_sweep_heartbeats(emulator, live_settings,
                                                                                  redis_client):
    from tests.workers.subscriptions.test_renewer import fresh_context, make_renewer

    emulator.add_user("alice@contoso.com")
    renewer = make_renewer(fresh_context(live_settings, redis_client), emulator, [("alice@contoso.com", "inbox")])
    before = emulator.clock.now().replace(microsecond=0)
    renewer.run(once=True, interval=60)
    after = emulator.clock.now()
    key = f"graphhook:renewer:alive:{socket.gethostname()}"
    record = {k.decode(): v.decode() for k, v in redis_client.hgetall(key).items()}
    assert record["pid"] == str(os.getpid())
    at = dt.datetime.strptime(record["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    assert before <= at <= after  # the renewer's own (injected) clock, not the wall clock
    assert 170 < redis_client.ttl(key) <= 180  # the leader lock's expiry: 3 x the interval
    assert probe.probe_renewer(redis_client, hostname=socket.gethostname())[0] is True
    # Within a sweep (one heartbeat per subscription) the record is refreshed at most every 5 s.
    redis_client.hset(key, "at", "marker")
    renewer.heartbeat()
    assert redis_client.hget(key, "at") == b"marker"
    emulator.advance(6)
    renewer.heartbeat()
    assert redis_client.hget(key, "at") != b"marker"
