"""Worker scaling: messages per second with 1, 2 and 4 worker processes sharing one queue.

Each round delivers N messages through the real chain (emulator → HTTPS receiver → RQ) while the
workers are suspended, starts K processes of the Procfile's ``worker`` command, resumes them and
times until every message's trigger has fired. Baseline, measured in the same run: one process.
The emulator, the receiver and this script share one Python process, so on a small machine the
emulator's Graph answers, not the workers, may be what caps the figure; the notes say so.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import redis
from rq import Queue, Worker
from rq.suspension import resume, suspend

from benchmarks import Report

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = (1, 2, 4)
MAILBOXES = 4  # Graph allows 4 concurrent requests per mailbox: spread the load as real tenants do


def _procfile_worker() -> list[str]:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("worker:"):
            return shlex.split(line.partition(":")[2])
    raise RuntimeError("Procfile has no worker line")


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _queued_notifications(queue: Queue) -> int:
    return sum(len(job.args[0]) for job in queue.jobs if job.func_name.endswith("process_notifications"))


def _round(emulator, r: redis.Redis, env: dict[str, str], processes: int, messages: int, tag: str,
           log_dir: Path, *, mailboxes: int = MAILBOXES, command: list[str] | None = None) -> float:
    """Seconds for ``processes`` workers to fire the triggers of ``messages`` queued messages."""
    from graphhook.core import jobformat, keys

    queue = jobformat.queue("graphhook", r)
    r.delete(keys.EVENTS)
    suspend(r)
    for i in range(messages):
        emulator.deliver(f"bench{i % mailboxes}@contoso.com", {"subject": f"{tag} {i}", "from": "bob@fabrikam.com"})
    _wait(lambda: _queued_notifications(queue) >= messages, 120, "notifications to be queued")
    procs = [subprocess.Popen(command or _procfile_worker(), env=env, stdout=open(log_dir / f"{tag}-{n}.log", "wb"),
                              stderr=subprocess.STDOUT) for n in range(processes)]
    try:
        _wait(lambda: len(Worker.all(queue=queue)) >= processes, 60, "workers to register")
        started = time.perf_counter()
        resume(r)
        _wait(lambda: r.llen(keys.EVENTS) >= messages, 600, "every trigger to fire")
        elapsed = time.perf_counter() - started
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
    return elapsed


@contextlib.contextmanager
def system(work: Path, mailboxes: int) -> Iterator[tuple[Any, redis.Redis, dict[str, str]]]:
    """Redis, the emulator (one notification per POST) and the HTTPS receiver, with ``mailboxes`` watched.

    Yields the emulator, a Redis client and the environment for worker processes.
    """
    from emulator import Emulator
    from emulator.delivery import DeliveryOptions
    from graphhook.core.settings import Settings
    from graphhook.devserver import BackgroundServer
    from graphhook.redis_server import RedisServer
    from receiver.app import create_app
    from workers import runtime
    from workers.subscriptions import operations

    saved_ca = os.environ.get("REQUESTS_CA_BUNDLE")
    # One notification per POST, so one RQ job per message: the unit of parallel work is the message.
    delivery = DeliveryOptions(batch_size=1)
    with RedisServer(work / "redis") as server, Emulator(work / "emulator", delivery=delivery) as emulator:
        os.environ["REQUESTS_CA_BUNDLE"] = str(emulator.ca_path)
        try:
            r = redis.Redis.from_url(server.url)
            settings = Settings.from_env({**emulator.environment(), "REDIS_URL": server.url,
                                          "PUBLIC_URL": "https://127.0.0.1"})
            pair = emulator.ca.issue("receiver")
            web = BackgroundServer(create_app(settings, redis_client=r), cert=pair.cert_path,
                                   key=pair.key_path).start()
            settings = settings.replace(public_url=web.url)
            ctx = runtime.build(settings, r)
            for m in range(mailboxes):
                emulator.add_user(f"bench{m}@contoso.com")
                operations.create(ctx.graph, r, settings, f"bench{m}@contoso.com", "inbox")
            bin_dir = str(Path(sys.executable).parent)
            env = {**os.environ, **emulator.environment(), "REDIS_URL": server.url, "PUBLIC_URL": web.url,
                   "GRAPHHOOK_QUEUE": "graphhook", "GRAPHHOOK_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT),
                   "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
            try:
                yield emulator, r, env
            finally:
                web.stop()
        finally:
            if saved_ca is None:
                os.environ.pop("REQUESTS_CA_BUNDLE", None)
            else:
                os.environ["REQUESTS_CA_BUNDLE"] = saved_ca


def run(quick: bool = False) -> Report:
    """Throughput with 1, 2 and 4 worker processes; ratios against one process."""
    messages = 40 if quick else int(os.environ.get("BENCH_SCALING_MESSAGES", "200"))
    work = Path(tempfile.mkdtemp(prefix="graphhook-bench-scaling-"))
    report = Report("worker scaling (Procfile worker processes, one queue)")
    with system(work, MAILBOXES) as (emulator, r, env):
        times = {k: _round(emulator, r, env, k, messages, f"p{k}", work) for k in PROCESSES}
    base = messages / times[1]
    report.add("messages per round", f"{messages} (one notification per POST and per job)")
    report.add("worker command", " ".join(_procfile_worker()))
    for k in PROCESSES:
        rate = messages / times[k]
        report.add(f"{k} process{'es' if k > 1 else ''}", f"{rate:7.1f} msg/s  ({rate / base:.2f}x one process)")
    report.notes.append(f"{os.cpu_count()} CPU(s); emulator and receiver run in the benchmark's own process")
    return report


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv).render())
