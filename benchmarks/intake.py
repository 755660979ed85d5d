"""Receiver intake throughput against a bare Flask 202 endpoint, same gunicorn settings, same run.

Both apps run under ``gunicorn -w 2 -k sync`` with the receiver's gunicorn config
(multiprocess metrics on) on loopback, with a private redis-server. Load comes
from ``wrk`` when it is on PATH, else from a small Python load generator (which
itself takes CPU, so its figures are lower; the ratio is what matters;
``BENCH_LOADGEN=python`` forces it). Rounds
alternate bare and receiver; medians are compared. Also: p99 latency of a POST
carrying 100 notifications.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing import Pool
from pathlib import Path

from flask import Flask, Response, request

from . import Report

ROOT = Path(__file__).resolve().parent.parent
TENANT = "8afd02d6-ebdd-4270-a515-c749898ea5c5"
CLIENT = "0f3e1c2a-0000-4000-8000-000000000001"
STATE = "bench-client-state-" + "x" * 40
GUNICORN = ["-w", "2", "-k", "sync", "--backlog", "2048", "--log-level", "warning", "-c", "python:receiver.gunicorn_conf"]
CONNECTIONS = 8  # concurrent connections of the load generator


def bare_app() -> Flask:
    """The baseline: a Flask app that reads the body and answers 202, nothing else."""
    app = Flask("bare")

    @app.post("/notifications")
    def notifications() -> Response:
        request.get_data()
        return Response("", status=202)

    return app


def rpush_app() -> Flask:
    """A reference point, not a design: the body RPUSHed to one Redis list (no checks, no job), then 202."""
    import redis

    app = Flask("rpush")
    r = redis.Redis.from_url(os.environ["REDIS_URL"])

    @app.post("/notifications")
    def notifications() -> Response:
        r.rpush("bench:rpush", request.get_data())
        return Response("", status=202)

    return app


def body(n: int) -> bytes:
    """A collection of ``n`` valid created-message notifications for the registered subscription."""
    return json.dumps({"value": [{
        "subscriptionId": "bench-sub", "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
        "changeType": "created", "clientState": STATE, "tenantId": TENANT,
        "resource": f"Users/8c1a4c9e-0000-4000-8000-00000000beef/Messages/AAMkAD{i:08d}=",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "@odata.id": f"Users/u/Messages/AAMkAD{i:08d}=",
                         "@odata.etag": 'W/"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf"', "id": f"AAMkAD{i:08d}="},
    } for i in range(n)]}).encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """One gunicorn server on a free loopback port."""

    def __init__(self, target: str, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.log = log
        with open(log, "wb") as out:  # a file, not a pipe: a full pipe would stall the workers' logging
            self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", *GUNICORN, "-b", f"127.0.0.1:{self.port}",
                                          target], env=env, cwd=ROOT, stdout=out, stderr=out,
                                         start_new_session=True)  # own process group: stop() reaches the workers
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn {target} exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    time.sleep(0.5)  # let both workers boot
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"gunicorn {target} did not start")

    @property
    def url(self) -> str:
        """Where to POST notifications."""
        return f"http://127.0.0.1:{self.port}/notifications"

    def cpu_seconds(self) -> float:
        """CPU time used so far by the master and its worker processes (Linux /proc; 0 elsewhere)."""
        pid = self.proc.pid
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:  # field 4: ppid
                    children.append(int(stat.parent.name))
            except (OSError, ValueError, IndexError):
                continue
        return sum(_cpu(p) for p in [pid, *children])

    def stop(self) -> None:
        """Stop gunicorn and its workers."""
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _cpu(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone or /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- load generators --------------------------------------------------------------------------

def _seconds(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(url: str, payload: bytes, duration: float, connections: int, workdir: Path) -> tuple[float, float, int]:
    """Requests/s, p99 latency (s) and non-2xx count, measured by wrk."""
    data = workdir / f"body-{len(payload)}.json"
    data.write_bytes(payload)
    script = workdir / f"post-{len(payload)}.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f'local f = io.open("{data}", "rb")\nwrk.body = f:read("*all")\nf:close()\n')
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = _seconds(re.search(r"\s99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    return rps, p99, (int(bad.group(1)) if bad else 0) + (1 if errors and "timeout 0" not in errors.group(0) else 0)


def _py_worker(args: tuple[int, bytes, float, int]) -> tuple[int, list[float], int]:
    port, payload, duration, threads = args
    request_bytes = (f"POST /notifications HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode() + payload
    latencies: list[float] = []
    bad = [0]
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def loop() -> None:
        mine, errors = [], 0
        while time.monotonic() < stop:
            started = time.perf_counter()
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(request_bytes)
                reply = b""
                while chunk := s.recv(65536):
                    reply += chunk
            mine.append(time.perf_counter() - started)
            errors += not reply.startswith(b"HTTP/1.1 2")
        with lock:
            latencies.extend(mine)
            bad[0] += errors

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return len(latencies), latencies, bad[0]


def pyload(url: str, payload: bytes, duration: float, connections: int, workdir: Path) -> tuple[float, float, int]:
    """Requests/s, p99 latency (s) and non-2xx count from a 2-process Python load generator."""
    port = int(url.split(":")[2].split("/")[0])
    with Pool(2) as pool:
        results = pool.map(_py_worker, [(port, payload, duration, connections // 2)] * 2)
    count = sum(r[0] for r in results)
    latencies = sorted(x for r in results for x in r[1])
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    return count / duration, p99, sum(r[2] for r in results)


# --- the benchmark ----------------------------------------------------------------------------

def run(quick: bool = False) -> Report:
    """Measure bare vs receiver requests/s (1 notification per POST) and p99 for 100 notifications."""
    import redis

    from graphhook.core import keys
    from graphhook.redis_server import RedisServer

    # Short alternating rounds, compared pairwise: the machine is shared, and load from elsewhere
    # hits a pair's two halves alike far more often than two long runs minutes apart.
    rounds, duration = (1, 3.0) if quick else (7, 4.0)
    load = wrk if shutil.which("wrk") and os.environ.get("BENCH_LOADGEN") != "python" else pyload
    workdir = Path(tempfile.mkdtemp(prefix="graphhook-bench-"))
    server = RedisServer(workdir / "redis").start()
    r = redis.Redis.from_url(server.url)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": server.url, "AZURE_TENANT_ID": TENANT,
           "AZURE_CLIENT_ID": CLIENT, "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prom")}
    env.pop("GRAPHHOOK_QUEUE", None)

    def reset() -> None:
        r.flushdb()
        r.hset(keys.subscription("bench-sub"), mapping={"clientState": STATE, "tenantId": TENANT,  # as the renewer writes
                                                        "userId": "8c1a4c9e-0000-4000-8000-00000000beef", "rich": ""})

    bare = receiver = rpush = None
    report = Report("intake: POST /notifications under gunicorn -w 2 -k sync, loopback")
    try:
        bare = Gunicorn("benchmarks.intake:bare_app()", env, workdir / "bare.log")
        rpush = Gunicorn("benchmarks.intake:rpush_app()", env, workdir / "rpush.log")
        receiver = Gunicorn("receiver.app:create_app()", env, workdir / "receiver.log")
        one, hundred = body(1), body(100)
        bare_rps, recv_rps, rpush_rps, errors = [], [], [], 0
        cpu = {"bare": [0.0, 0], "receiver": [0.0, 0], "rpush": [0.0, 0]}  # CPU seconds (server + Redis), requests
        redis_pid = server.process.pid if server.process else 0
        reset()
        load(bare.url, one, 1.0, CONNECTIONS, workdir)  # warm-up
        load(receiver.url, one, 1.0, CONNECTIONS, workdir)
        load(rpush.url, one, 1.0, CONNECTIONS, workdir)
        for _ in range(rounds):
            reset()
            for name, target, series in (("bare", bare, bare_rps), ("receiver", receiver, recv_rps),
                                         ("rpush", rpush, rpush_rps)):
                before = target.cpu_seconds() + _cpu(redis_pid)
                rps, _p99, bad = load(target.url, one, duration, CONNECTIONS, workdir)
                cpu[name][0] += target.cpu_seconds() + _cpu(redis_pid) - before
                cpu[name][1] += int(rps * duration)
                series.append(rps)
                errors += bad
        enqueued = r.llen("rq:queue:graphhook")
        reset()
        rps100, p99_100, bad100 = load(receiver.url, hundred, duration, CONNECTIONS, workdir)
        _rps, p99_100_light, _bad = load(receiver.url, hundred, duration, 2, workdir)
        b, v = statistics.median(bare_rps), statistics.median(recv_rps)
        pair_ratio = statistics.median(x / y for x, y in zip(recv_rps, bare_rps))
        rpush_ratio = statistics.median(x / y for x, y in zip(rpush_rps, bare_rps))
        per_request = {name: 1e6 * c / max(n, 1) for name, (c, n) in cpu.items()}
        report.add("load generator", "wrk" if load is wrk else "python (wrk absent or BENCH_LOADGEN=python)")
        report.add("bare Flask 202 (1 notification)", f"{b:,.0f} req/s  (rounds: {', '.join(f'{x:,.0f}' for x in bare_rps)})")
        report.add("receiver (1 notification)", f"{v:,.0f} req/s  (rounds: {', '.join(f'{x:,.0f}' for x in recv_rps)})")
        report.add("ratio receiver / bare", f"{pair_ratio:.0%} median of per-round ratios, "
                   f"{v / b:.0%} of medians  (target >= 45%)")
        report.add("per-round ratios", ", ".join(f"{x / y:.0%}" for x, y in zip(recv_rps, bare_rps)))
        report.add("reference: one RPUSH, no checks", f"{statistics.median(rpush_rps):,.0f} req/s, "
                   f"{rpush_ratio:.0%} of bare")
        if all(per_request.values()):
            report.add("CPU per request (server + Redis)", ", ".join(f"{k} {v:.0f} us" for k, v in per_request.items())
                       + f" -> CPU-bound ratio {per_request['bare'] / per_request['receiver']:.0%}")
        report.add("receiver (100 notifications)", f"{rps100:,.0f} POST/s = {rps100 * 100:,.0f} notifications/s")
        report.add(f"p99, 100 notifications, {CONNECTIONS} conns", f"{p99_100 * 1000:.1f} ms")
        report.add("p99, 100 notifications, 2 conns", f"{p99_100_light * 1000:.1f} ms  (target <= 50 ms)")
        report.add("errors (non-2xx, socket)", str(errors + bad100))
        report.add("jobs persisted in last 1-notification round", f"{enqueued:,}")
        report.notes.append("CPU per request excludes the load generator; it is what the receiver costs whatever else runs")
    finally:
        for gunicorn in (bare, receiver, rpush):
            if gunicorn is not None:
                gunicorn.stop()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return report
