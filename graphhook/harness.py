"""The whole of graphhook on one machine, with switches to break it: the soak test's and benchmark's harness.

:class:`Pipeline` starts, each as production runs it: Redis with its append-only file
(``appendfsync always``), the Graph emulator over HTTPS, the receiver under gunicorn over
HTTPS, ``graphhook renewer --once`` to create the subscriptions (with their delta baseline),
N ``graphhook worker`` processes (the Procfile's command) kept running by a small
supervisor the way systemd or Kubernetes restarts a process that exits, and a
:class:`WebhookSink`: a real HTTP server on 127.0.0.1 that an ``all_mail`` webhook posts to,
which checks each signature and counts deliveries per message id.

Faults it can inject: :meth:`Pipeline.kill_busy_worker` (SIGKILL a worker in the middle of
a job), :meth:`Pipeline.crash_redis` (SIGKILL Redis, restart it on the same port and AOF
after an outage), :meth:`Pipeline.remove_subscription` (the emulator's
``subscriptionRemoved``); Graph errors and duplicate or reordered delivery are the
emulator's own knobs (``pipeline.emulator.faults``, ``pipeline.emulator.delivery.options``).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import redis
import requests

from emulator import Emulator
from workers.response.purge import process_alive

from .core import jobformat
from .redis_server import RedisServer, free_port
from .sink import WebhookSink

MAINTENANCE_SECONDS = 5  # workers' RQ maintenance interval here (production: 60 s): dead workers' jobs come back soon

ROOT = Path(__file__).resolve().parent.parent
SECRET_ENV = "GRAPHHOOK_HARNESS_WEBHOOK_SECRET"
RESTART_DELAY = 0.5  # s before the supervisor restarts an exited worker (systemd's RestartSec)


@dataclass
class _Slot:
    proc: subprocess.Popen
    restarts: int = 0
    pids: list[int] = field(default_factory=list)


class Workers:
    """N ``graphhook worker`` processes, each restarted when it exits (as systemd would)."""

    def __init__(self, count: int, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self._log = open(log_path, "ab")
        self.slots = [_Slot(self._spawn()) for _ in range(count)]
        for slot in self.slots:
            slot.pids.append(slot.proc.pid)
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)
        self._thread.start()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "graphhook", "worker"], env=self.env, cwd=ROOT,
                                stdout=self._log, stderr=self._log, start_new_session=True)

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            for slot in self.slots:
                if slot.proc.poll() is not None and not self._stop.is_set():
                    time.sleep(RESTART_DELAY)
                    slot.proc = self._spawn()
                    slot.pids.append(slot.proc.pid)
                    slot.restarts += 1
                    self.restarts += 1

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.slots if s.proc.poll() is None]

    def all_pids(self) -> set[int]:
        return {pid for s in self.slots for pid in s.pids}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for slot in self.slots:
            if slot.proc.poll() is None:
                slot.proc.terminate()
        for slot in self.slots:
            try:
                slot.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                slot.proc.kill()
                slot.proc.wait()
        self._log.close()


# --- the pipeline --------------------------------------------------------------------------------

class Pipeline:
    """Redis (AOF) + emulator + gunicorn receiver + renewer + N workers + webhook sink, on loopback."""

    def __init__(self, mailboxes: list[str], *, workers: int = 3, workdir: Path | None = None,
                 gunicorn_workers: int = 2, log_level: str = "WARNING", env: dict[str, str] | None = None) -> None:
        self.mailboxes = mailboxes
        self.worker_count = workers
        self.gunicorn_workers = gunicorn_workers
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="graphhook-harness-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_level = log_level
        self.extra_env = dict(env or {})  # settings for every process (e.g. GRAPHHOOK_MAILBOX_SLOT_SECONDS)
        self.queue_name = f"graphhook-harness-{os.getpid()}"
        self.queue_names = [self.queue_name]  # Settings.queues
        self.secret = secrets.token_urlsafe(24)
        self.redis_server: RedisServer | None = None
        self.emulator: Emulator | None = None
        self.sink: WebhookSink | None = None
        self.receiver: subprocess.Popen | None = None
        self.receiver_url = ""
        self.workers: Workers | None = None
        self.env: dict[str, str] = {}
        self.delivered_at: dict[str, float] = {}
        self.mailbox_of: dict[str, str] = {}
        self.timeline: list[tuple[float, str]] = []
        self._redis: redis.Redis | None = None
        self.started = 0.0

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> "Pipeline":
        self.started = time.monotonic()
        self.redis_server = RedisServer(self.workdir / "redis", appendonly=True, appendfsync="always").start()
        self._redis = redis.Redis.from_url(self.redis_server.url)
        self.emulator = Emulator(self.workdir / "emulator").start()
        for mailbox in self.mailboxes:
            self.emulator.add_user(mailbox)
        self.sink = WebhookSink(self.secret).start()
        config = self.workdir / "graphhook.yaml"
        config.write_text(json.dumps({  # JSON is YAML
            "version": 1,
            "mailboxes": self.mailboxes,
            "webhooks": {"sink": {"url": self.sink.url, "secret_env": SECRET_ENV, "all_mail": True,
                                  "timeout": 5, "backoff": [1, 2, 5, 10, 30, 60]}},
        }, indent=2))
        port = free_port()
        self.receiver_url = f"https://127.0.0.1:{port}"
        prom = self.workdir / "prom"
        prom.mkdir(exist_ok=True)
        self.env = {**os.environ, **self.emulator.environment(), "REDIS_URL": self.redis_server.url,
                    "PUBLIC_URL": self.receiver_url, "GRAPHHOOK_QUEUE": self.queue_name,
                    "GRAPHHOOK_CONFIG": str(config), SECRET_ENV: self.secret, "PYTHONPATH": str(ROOT),
                    "GRAPHHOOK_LOG_LEVEL": self.log_level, "PROMETHEUS_MULTIPROC_DIR": str(prom),
                    "GRAPHHOOK_WORKER_MAINTENANCE_SECONDS": str(MAINTENANCE_SECONDS), **self.extra_env}
        pair = self.emulator.ca.issue("receiver")
        log = open(self.workdir / "receiver.log", "ab")
        self.receiver = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:receiver.gunicorn_conf", "receiver.app:create_app()",
             "-b", f"127.0.0.1:{port}", "-w", str(self.gunicorn_workers),
             "--certfile", str(pair.cert_path), "--keyfile", str(pair.key_path)],
            env=self.env, cwd=ROOT, stdout=log, stderr=log)
        self.wait_until(lambda: self._ready(), 60, "the receiver's /healthz")
        renewer = subprocess.run([sys.executable, "-m", "graphhook", "renewer", "--once"], env=self.env, cwd=ROOT,
                                 stdout=log, stderr=log, timeout=300)
        if renewer.returncode != 0:
            raise RuntimeError(f"graphhook renewer --once exited {renewer.returncode}; see {self.workdir / 'receiver.log'}")
        subs = self.subscriptions()
        if len(subs) != len(self.mailboxes):
            raise RuntimeError(f"expected {len(self.mailboxes)} subscriptions, the emulator has {len(subs)}")
        self.workers = Workers(self.worker_count, self.env, self.workdir / "workers.log")
        self.note("started")
        return self

    def stop(self) -> None:
        if self.workers is not None:
            self.workers.stop()
        if self.receiver is not None and self.receiver.poll() is None:
            self.receiver.terminate()
            try:
                self.receiver.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.receiver.kill()
        if self.sink is not None:
            self.sink.stop()
        if self.emulator is not None:
            self.emulator.stop()
        if self.redis_server is not None:
            self.redis_server.stop()

    def __enter__(self) -> "Pipeline":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- observation ---------------------------------------------------------------------
    @property
    def redis(self) -> redis.Redis:
        assert self._redis is not None
        return self._redis

    def note(self, what: str) -> None:
        self.timeline.append((round(time.monotonic() - self.started, 2), what))

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.receiver_url}/healthz", verify=str(self.emulator.ca_path), timeout=2).ok
        except requests.RequestException:
            return False

    @staticmethod
    def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
        """Poll ``predicate`` every 0.1 s; raise TimeoutError naming ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.1)

    def subscriptions(self) -> dict[str, str]:
        """Live subscriptions at the emulator: id → mailbox address."""
        assert self.emulator is not None
        users = {u.id: u.mail for u in self.emulator.mail.users.values()}
        with self.emulator.subscriptions.lock:
            subs = list(self.emulator.subscriptions.items.values())
        out = {}
        for sub in subs:
            user_id = sub.resource.split("/")[1] if "/" in sub.resource else ""
            out[sub.id] = users.get(user_id, sub.resource)
        return out

    # --- load ----------------------------------------------------------------------------
    def deliver(self, mailbox: str, subject: str) -> str:
        """Put one new message in ``mailbox`` (the emulator notifies); return its immutable id, as graphhook reports it."""
        assert self.emulator is not None
        message_id = self.emulator.deliver(mailbox, {
            "subject": subject, "from": {"name": "Soak", "address": "soak@fabrikam.com"},
            "body": f"{subject}: proof under load"})["_immutableId"]  # graphhook asks for immutable ids
        self.delivered_at[message_id] = time.time()
        self.mailbox_of[message_id] = mailbox
        return message_id

    # --- faults --------------------------------------------------------------------------
    def kill_busy_worker(self, timeout: float = 30.0) -> int:
        """SIGKILL a worker process while it runs a job (its job is abandoned mid-way); return its pid."""
        from rq import Worker

        assert self.workers is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ours = set(self.workers.pids())
            try:
                busy = [w for w in Worker.all(connection=self.redis) if w.pid in ours and w.get_state() == "busy"]
            except redis.RedisError:
                busy = []
            for worker in busy:
                if worker.get_current_job_id():
                    os.killpg(worker.pid, signal.SIGKILL)
                    self.note(f"SIGKILL worker pid {worker.pid} in job {worker.get_current_job_id()}")
                    return worker.pid
            time.sleep(0.01)
        raise TimeoutError("no worker was busy")

    def kill_redis(self) -> None:
        """SIGKILL Redis (no shutdown save: only what its append-only file holds survives)."""
        assert self.redis_server is not None and self.redis_server.process is not None
        self.redis_server.process.kill()
        self.redis_server.process.wait()
        self.note("Redis killed (SIGKILL)")

    def start_redis(self) -> None:
        """Start Redis again on the same port, from its append-only file."""
        assert self.redis_server is not None
        self.redis_server.start()
        self.note("Redis restarted from its append-only file")

    def crash_redis(self, outage: float = 2.0) -> None:
        """SIGKILL Redis, keep it down ``outage`` seconds, restart it on the same port from its AOF."""
        self.kill_redis()
        time.sleep(outage)
        self.start_redis()

    def remove_subscription(self, mailbox: str) -> str:
        """Have the emulator remove ``mailbox``'s subscription and send ``subscriptionRemoved``; return its id."""
        assert self.emulator is not None
        sid = next(s for s, m in self.subscriptions().items() if m == mailbox)
        self.emulator.lifecycle(sid, "subscriptionRemoved")
        self.note(f"subscription of {mailbox} removed by the emulator")
        return sid

    def expire_dead_workers_jobs(self) -> int:
        """Expire now what dead worker processes still hold; return how many jobs and locks.

        RQ learns that a worker died only when its jobs' heartbeats lapse (90 s after the last),
        a dead scheduler holds its lock for 61 s, and a job a dead worker took off the queue before
        starting it waits in RQ's intermediate list until maintenance has seen it there for a
        minute. A test that cannot wait that long calls this: it does what the passage of time
        would do, only to what dead processes hold. The retry after it is RQ's own code.
        """
        from rq import Worker
        from rq.executions import Execution
        from rq.scheduler import SCHEDULER_KEY_TEMPLATE, SCHEDULER_LOCKING_KEY_TEMPLATE

        assert self.workers is not None
        dead = {w.name for w in Worker.all(connection=self.redis)
                if w.pid in self.workers.all_pids() and not process_alive(w.pid)}
        moved = 0
        for name in self.queue_names:
            registry = jobformat.queue(name, self.redis).started_job_registry
            for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
                try:
                    execution = Execution.fetch(execution_id, job_id, connection=self.redis)
                except Exception:  # noqa: BLE001 — gone meanwhile
                    continue
                if execution.worker_name in dead:
                    self.redis.zadd(registry.key, {f"{job_id}:{execution_id}": 0}, xx=True)
                    moved += 1
            # Not started two maintenance passes after RQ first saw it (a live worker takes ms): stuck; skip its minute.
            intermediate = jobformat.queue(name, self.redis).intermediate_queue
            for job_id in intermediate.get_job_ids():
                seen = intermediate.get_first_seen(job_id)
                if job_id in registry or seen is None or time.time() - seen.timestamp() < 2 * MAINTENANCE_SECONDS:
                    continue
                if seen.timestamp() > time.time() - 61:
                    self.redis.set(intermediate.get_first_seen_key(job_id), time.time() - 61, xx=True, keepttl=True)
                    moved += 1
            lock = SCHEDULER_LOCKING_KEY_TEMPLATE % name
            holder = self.redis.get(lock)
            if holder:
                pid = self.redis.hget(SCHEDULER_KEY_TEMPLATE % holder.decode(), "pid")
                if pid is None or not process_alive(int(pid)):
                    moved += self.redis.delete(lock)
        if moved:
            self.note(f"{moved} job(s) and lock(s) of dead workers expired")
        return moved

    # --- figures -------------------------------------------------------------------------
    def outcome(self) -> "Outcome":
        """What the sink saw for the delivered messages."""
        assert self.sink is not None
        posts = self.sink.posts_per_message()
        events = self.sink.events_per_message()
        first = self.sink.first_delivery()
        ids = list(self.delivered_at)
        recorded: Counter = Counter()
        try:  # the built-in record trigger (graphhook:events), the other trigger every email fires
            from graphhook.core import keys

            for line in self.redis.lrange(keys.EVENTS, 0, -1):
                recorded[json.loads(line)["email"]["id"]] += 1
        except redis.RedisError:
            pass
        latencies = sorted(first[m] - self.delivered_at[m] for m in ids if m in first)
        return Outcome(
            delivered=len(ids),
            fired=sum(1 for m in ids if m in first),
            missing=[m for m in ids if m not in first],
            fired_twice=[m for m in ids if len(events.get(m, ())) > 1],
            redelivered=[m for m in ids if posts.get(m, 0) > len(events.get(m, ()))],
            unexpected=[m for m in posts if m not in self.delivered_at],
            latencies=latencies,
            bad_signatures=self.sink.bad_signatures,
            recorded_twice=[m for m in ids if recorded.get(m, 0) > 1],
        )


@dataclass
class Outcome:
    """Per-message result at the webhook sink."""

    delivered: int
    fired: int
    missing: list[str]
    fired_twice: list[str]  # two distinct events for one message: the trigger fired twice
    redelivered: list[str]  # the same event POSTed again (at-least-once webhook delivery; same event id)
    unexpected: list[str]
    latencies: list[float]
    bad_signatures: int
    recorded_twice: list[str] = field(default_factory=list)  # the record trigger's event list has it twice

    @property
    def exactly_once(self) -> bool:
        return (self.fired == self.delivered and not self.missing and not self.fired_twice and not self.unexpected
                and not self.recorded_twice)

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        return self.latencies[min(len(self.latencies) - 1, int(len(self.latencies) * p))]
