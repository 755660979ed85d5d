"""The receiver as production runs it: gunicorn with two (recycled) worker processes, multiprocess metrics on the
master's private listener, and slow clients that do not starve Graph."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from graphhook.redis_server import free_port
from tests.conftest import STARTUP_GRACE, answers, wait_for

from .conftest import change, register

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def start_gunicorn(redis_server, redis_client, tmp_path):
    """Start gunicorn as the Procfile does (our gunicorn_conf, no worker class on the command line); its URL."""
    procs = []

    def start(*args: str, **env_extra: str) -> str:
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_server.url, "AZURE_TENANT_ID": "t1",
               "AZURE_CLIENT_ID": "c1", **env_extra}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", *args,
             "-c", "python:receiver.gunicorn_conf", "receiver.app:create_app()"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"gunicorn-{port}.log", "ab"),
            start_new_session=True))  # its own process group: teardown stops workers too
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(f"{url}/healthz"), timeout=STARTUP_GRACE, interval=0.1)
        return url

    yield start
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def gunicorn(start_gunicorn, tmp_path):
    prom = tmp_path / "prom"
    prom.mkdir()
    (prom / "counter_stale.db").write_bytes(b"left over from an earlier run")  # on_starting must wipe it
    metrics_port = free_port()
    url = start_gunicorn("-w", "2", "--max-requests", "25", PROMETHEUS_MULTIPROC_DIR=str(prom),
                         GRAPHHOOK_METRICS_PORT=str(metrics_port))
    yield url, prom, f"http://127.0.0.1:{metrics_port}/metrics"


def test_metrics_add_up_across_worker_processes(gunicorn, redis_client):
    gunicorn, prom, private = gunicorn
    register(redis_client, "t1")
    def handshake(i: int) -> int:
        return requests.post(f"{gunicorn}/notifications", params={"validationToken": f"token {i}"}, timeout=5).status_code

    def pids() -> set[str]:
        return {f.stem.split("_")[-1] for f in prom.glob("counter_*.db")}

    with ThreadPoolExecutor(8) as pool:  # concurrent, so that both workers take some
        assert set(pool.map(handshake, range(80))) == {200}
    # Workers recycle after 25 requests; a gevent worker may have accepted all 80 before it stopped
    # accepting, and it notices that it should stop only once a second, so go on one at a time, pausing
    # between them (a quick machine sent hundreds within that second), until a replacement worker has counted too.
    sent = 80

    def a_replacement_worker_counted() -> bool:
        nonlocal sent
        assert handshake(sent) == 200
        sent += 1
        return len(pids()) >= 3

    wait_for(a_replacement_worker_counted, timeout=120, interval=0.05)
    for i in range(6):  # separate connections: gunicorn's sync workers take turns
        assert requests.post(f"{gunicorn}/notifications", json={"value": [change("t1", message=f"m{i}")]},
                             timeout=5).status_code == 202
    assert requests.get(f"{gunicorn}/readyz", timeout=5).status_code == 200
    # The master's private listener adds up every worker's files; the public port has no metrics without credentials.
    text = requests.get(private, timeout=5).text
    assert f"graphhook_validation_handshakes_total {float(sent)}" in text
    assert 'graphhook_notifications_accepted_total{kind="change",tenant="default"} 6.0' in text
    assert "graphhook_intake_seconds_count 6.0" in text
    assert 'graphhook_subscriptions{health="ok"}' in text and "a@contoso.com" not in text  # Redis's, aggregated
    assert requests.get(f"{gunicorn}/metrics", timeout=5).status_code == 404
    assert not (prom / "counter_stale.db").exists()
    # Workers are recycled every 25 requests, so several processes (each with its own file) were summed.
    assert len(pids()) >= 3


class SlowClient(threading.Thread):
    """A socket that sends its request a byte at a time (``part``: "body" after complete headers, "chunks" of a
    chunked body, or "headers")
    until the server closes it; ``.answer`` is what the server said before closing (b"" if nothing)."""

    def __init__(self, url: str, part: str) -> None:
        super().__init__(daemon=True)
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.part = part
        self.closed = threading.Event()
        self.started_trickling = threading.Event()
        self.answer = b""

    def run(self) -> None:
        head = b"POST /notifications HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        if self.part == "body":
            self.sock.sendall(head + b"Content-Length: 100000\r\n\r\n")
            trickle = b"{" + b" " * 99999
        elif self.part == "chunks":
            self.sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
            trickle = b"1\r\n \r\n" * 20000
        else:
            trickle = head
        try:
            for byte in trickle:
                self.sock.sendall(bytes([byte]))
                self.started_trickling.set()
                if select.select([self.sock], [], [], 0.5)[0]:  # the server answered or closed: read to the end
                    while chunk := self.sock.recv(4096):
                        self.answer += chunk
                    break
        except OSError:  # reset by the server
            pass
        finally:
            self.sock.close()
            self.closed.set()


@pytest.mark.parametrize("worker", [(), ("-k", "gthread", "--threads", "32")], ids=["as-deployed", "gthread-fallback"])
def test_slow_clients_neither_starve_graph_nor_stay_forever(start_gunicorn, redis_client, worker):
    # Two worker processes, as deployed (gunicorn_conf's gevent worker); also an operator's gthread override
    # with threads to spare, where the body deadline's timer thread must still close the tricklers.
    url = start_gunicorn("-w", "2", *worker, GRAPHHOOK_BODY_TIMEOUT_SECONDS="15", GRAPHHOOK_METRICS_PORT="0")
    register(redis_client, "t1")
    slow = ([SlowClient(url, "body") for _ in range(10)] + [SlowClient(url, "chunks") for _ in range(2)]
            + [SlowClient(url, "headers") for _ in range(5)])
    for client in slow:
        client.start()
    for client in slow:
        assert client.started_trickling.wait(30)

    # Graph's POST is answered while the slow clients still hold their connections.
    reply = requests.post(f"{url}/notifications", json={"value": [change("t1")]}, timeout=30)
    assert reply.status_code == 202
    assert not any(c.closed.is_set() for c in slow if c.part != "headers"), "the body deadline fired before the POST"

    # ... and the server closes every slow connection itself: 408 for the slow bodies, headers cut off.
    wait_for(lambda: all(c.closed.is_set() for c in slow), timeout=120, interval=0.5)
    for client in slow:
        if client.part != "headers":
            assert client.answer.startswith(b"HTTP/1.1 408"), (client.part, client.answer[:80])


@pytest.mark.parametrize("worker", [(), ("-k", "gthread", "--threads", "8")], ids=["as-deployed", "gthread-fallback"])
def test_large_posts_take_turns_and_every_one_is_answered(start_gunicorn, redis_client, worker):
    """Large POSTs queue for their process's lane (receiver/lane.py, gevent's semaphore as deployed): none is lost
    or left hanging, and Graph's small POST is answered while they queue."""
    url = start_gunicorn("-w", "1", *worker, GRAPHHOOK_METRICS_PORT="0")
    register(redis_client, "t1")
    large = json.dumps({"value": [change("t1", sid=f"unknown-{i}", message=f"m{i}") for i in range(1000)]})
    assert len(large) > 64 * 1024  # over the lane's threshold

    def post(body: str) -> int:
        return requests.post(f"{url}/notifications", data=body, headers={"Content-Type": "application/json"},
                             timeout=120).status_code

    with ThreadPoolExecutor(12) as pool:
        flood = [pool.submit(post, large) for _ in range(24)]
        assert post(json.dumps({"value": [change("t1", message="legit")]})) == 202
        assert [f.result() for f in flood] == [202] * 24
    assert post(large) == 202  # the lane was given back every time
