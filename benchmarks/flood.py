"""A legitimate notification POST while hostile ~4 MiB POSTs flood the receiver (issue 17, item 2).

The receiver runs as deployed: ``gunicorn -w 2 -c python:receiver.gunicorn_conf`` (the gevent
worker its config sets), on loopback, with a private redis-server. Baseline: 100 sequential
single-notification POSTs for a registered subscription, each on a new connection as Graph
sends them, with nothing else running. Then the same while 12 connections (2 load processes,
so the flood's CPU does not sit on the measuring thread's GIL) POST hostile bodies back to back,
alternating two kinds, each just under the 4 MiB body limit:

- ``over``: ~97,000 items ``{"subscriptionId":"s<i>","tenantId":"t"}`` (over GRAPHHOOK_MAX_NOTIFICATIONS,
  and over the JSON values 1000 notifications may carry: 413 before the body is parsed);
- ``at``: exactly 1000 items with random subscription ids, padded to ~4 KiB each (the worst
  case that passes the count bound: 1000 Redis lookups, one summary log line).

Figures: p50/p95/max of the legitimate POSTs with and without the flood, the p95 ratio, and both
against the 2 s target; hostile responses counted by status; the machine's load average before and
after (the figures swing with what else runs on the cores).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import requests

from . import Report
from .intake import CLIENT, ROOT, STATE, TENANT, Gunicorn, _cpu, _free_port, body

GUNICORN = ["-w", "2", "--log-level", "warning", "-c", "python:receiver.gunicorn_conf"]  # worker class: the config's (gevent)
FLOOD_CONNECTIONS = 12
LOAD_PROCESSES = 2
TARGET = 2.0  # s, issue 17
MAX_BODY = 4 * 1024 * 1024  # GRAPHHOOK_MAX_BODY_BYTES's default: hostile bodies stay just under it
LIMIT = 1000  # GRAPHHOOK_MAX_NOTIFICATIONS's default


class Receiver(Gunicorn):
    """The receiver under gunicorn with its deployed settings (intake's Gunicorn forces ``-k sync``)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:  # noqa: D107 - same start-up as Gunicorn's
        self.port = _free_port()
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", *GUNICORN, "-b", f"127.0.0.1:{self.port}",
                                          "receiver.app:create_app()"], env=env, cwd=ROOT, stdout=out, stderr=out,
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    time.sleep(1.0)  # let both workers boot
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("gunicorn did not start")


def over_body(limit: int = MAX_BODY - 1024) -> bytes:
    """As many ``{"subscriptionId":"s<i>","tenantId":"t"}`` items as fit just under ``limit`` bytes."""
    items, size, i = [], len(b'{"value":[]}'), 0
    while True:
        item = f'{{"subscriptionId":"s{i}","tenantId":"t"}}'
        if size + len(item) + 1 > limit:
            break
        items.append(item)
        size += len(item) + 1
        i += 1
    return ('{"value":[' + ",".join(items) + "]}").encode()


def at_body(limit: int = MAX_BODY - 1024) -> bytes:
    """Exactly LIMIT well-formed created-message items with random subscription ids, padded to just under ``limit``."""
    def item(pad: int) -> dict:
        return {"subscriptionId": str(uuid.uuid4()), "tenantId": "t", "changeType": "created",
                "clientState": "x" * pad, "resource": f"Users/u1/Messages/m{uuid.uuid4().hex}"}

    bare = len(json.dumps({"value": [item(0) for _ in range(LIMIT)]}))
    return json.dumps({"value": [item((limit - bare) // LIMIT) for _ in range(LIMIT)]}).encode()


def _request(port: int, payload: bytes) -> bytes:
    return (f"POST /notifications HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode() + payload


def _flood(port: int, threads: int, stop: "mp.synchronize.Event", results: "mp.Queue") -> None:
    """One load process: ``threads`` connections POSTing hostile bodies back to back until ``stop``."""
    kinds = {"over": [_request(port, over_body())], "at": [_request(port, at_body()) for _ in range(3)]}
    counts: Counter[str] = Counter()
    sent = [0]
    lock = threading.Lock()

    def loop(index: int) -> None:
        mine: Counter[str] = Counter()
        n, nbytes = index, 0
        while not stop.is_set():
            kind = "over" if n % 2 == 0 else "at"
            data = kinds[kind][n % len(kinds[kind])]
            n += 1
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                    s.sendall(data)
                    reply = b""
                    while chunk := s.recv(65536):
                        reply += chunk
                status = reply[9:12].decode(errors="replace") if reply.startswith(b"HTTP/1.") else "no reply"
            except OSError as exc:
                status = type(exc).__name__
            mine[f"{kind} {status}"] += 1
            nbytes += len(data)
        with lock:
            counts.update(mine)
            sent[0] += nbytes

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put((dict(counts), sent[0]))


def _legit(url: str, payload: bytes, count: int) -> tuple[list[float], Counter[str]]:
    """Latencies (s) of ``count`` sequential POSTs, each on a new connection, and their statuses."""
    latencies, statuses = [], Counter()
    for _ in range(count):
        started = time.perf_counter()
        try:
            status = str(requests.post(url, data=payload, headers={"Content-Type": "application/json"},
                                       timeout=10).status_code)
        except requests.RequestException as exc:
            status = type(exc).__name__
        latencies.append(time.perf_counter() - started)
        statuses[status] += 1
    return latencies, statuses


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _summary(values: list[float]) -> str:
    return (f"p50 {statistics.median(values) * 1000:.1f} ms, p95 {_pct(values, 0.95) * 1000:.1f} ms, "
            f"max {max(values) * 1000:.1f} ms")


def _loads(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def run(quick: bool = False) -> Report:
    """Legitimate POST latency with no flood, then under 12 concurrent ~4 MiB hostile POSTs."""
    import redis

    from graphhook.core import keys
    from graphhook.redis_server import RedisServer

    count = 20 if quick else 100
    workdir = Path(tempfile.mkdtemp(prefix="graphhook-bench-"))
    server = RedisServer(workdir / "redis").start()
    r = redis.Redis.from_url(server.url)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": server.url, "AZURE_TENANT_ID": TENANT,
           "AZURE_CLIENT_ID": CLIENT, "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prom")}
    for name in ("GRAPHHOOK_QUEUE", "GRAPHHOOK_MAX_NOTIFICATIONS", "GRAPHHOOK_MAX_BODY_BYTES", "GUNICORN_CMD_ARGS"):
        env.pop(name, None)
    r.hset(keys.subscription("bench-sub"), mapping={"clientState": STATE, "tenantId": TENANT,  # as the renewer writes
                                                    "userId": "8c1a4c9e-0000-4000-8000-00000000beef", "rich": ""})
    report = Report(f"flood: 1-notification POST vs {FLOOD_CONNECTIONS} concurrent ~4 MiB hostile POSTs, "
                    "gunicorn -w 2 (gevent), loopback")
    receiver = None
    procs: list[mp.Process] = []
    stop = mp.Event()
    load_before = os.getloadavg()
    try:
        receiver = Receiver(env, workdir / "receiver.log")
        one = body(1)
        _legit(receiver.url, one, 10)  # warm-up
        base, base_status = _legit(receiver.url, one, count)

        results: mp.Queue = mp.Queue()
        r.config_resetstat()
        cpu_before = receiver.cpu_seconds() + _cpu(server.process.pid if server.process else 0)
        procs = [mp.Process(target=_flood, args=(receiver.port, FLOOD_CONNECTIONS // LOAD_PROCESSES, stop, results))
                 for _ in range(LOAD_PROCESSES)]
        flood_started = time.monotonic()
        for p in procs:
            p.start()
        time.sleep(3.0)  # bodies built, every connection busy
        flooded, flood_status = _legit(receiver.url, one, count)
        stop.set()
        outcomes = [results.get(timeout=60) for _ in procs]
        flood_seconds = time.monotonic() - flood_started
        for p in procs:
            p.join(timeout=10)
        cpu = receiver.cpu_seconds() + _cpu(server.process.pid if server.process else 0) - cpu_before
        hostile: Counter[str] = Counter()
        for counts, _ in outcomes:
            hostile.update(counts)
        sent = sum(nbytes for _, nbytes in outcomes)
        lookups = int(r.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0))

        p95_ratio = _pct(flooded, 0.95) / _pct(base, 0.95)
        report.add("legitimate POSTs", f"{count} sequential, 1 notification, new connection each")
        report.add("baseline (no flood)", _summary(base) + f"  statuses {dict(base_status)}")
        report.add("under flood", _summary(flooded) + f"  statuses {dict(flood_status)}")
        report.add("ratio flood / baseline, p95", f"{p95_ratio:.1f}x")
        report.add("under flood vs 2 s target", f"p95 {_pct(flooded, 0.95):.3f} s, max {max(flooded):.3f} s  "
                   f"({'within' if max(flooded) < TARGET else 'OVER'} target)")
        over = over_body()
        report.add("hostile bodies", f"over: {len(over):,} B, {over.count(b'subscriptionId'):,} items; "
                   f"at: {len(at_body()):,} B, {LIMIT} items, random ids")
        report.add("hostile responses by status", ", ".join(f"{k}: {v}" for k, v in sorted(hostile.items())))
        total = sum(hostile.values())
        report.add("hostile load", f"{total / flood_seconds:.1f} POST/s, {sent / flood_seconds / 2**20:.0f} MiB/s "
                   f"over {flood_seconds:.0f} s")
        report.add("Redis HMGET calls during flood", f"{lookups:,}")
        report.add("server CPU during flood (gunicorn + Redis)", f"{cpu:.1f} s in {flood_seconds:.0f} s")
        report.add("load average (1, 5, 15 min) before / after", f"{_loads(load_before)} / {_loads(os.getloadavg())}")
        report.notes.append("the flood's load processes share the machine's cores with the receiver")
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
        if receiver is not None:
            receiver.stop()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return report
