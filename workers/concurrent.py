"""Many jobs in flight per worker process, shared fairly between mailboxes, never asleep in a Retry-After.

A job spends about 2 % of its time computing and the rest waiting for Graph
(100–300 ms a call), so one job at a time leaves a process idle. This worker is
RQ's own (non-forking) worker with a thread pool behind its work loop:

- **RQ's loop, RQ's bookkeeping.** ``BaseWorker.work`` dequeues as usual; :meth:`execute_job`
  marks the job started (RQ's execution, ``StartedJobRegistry``, status ``started``) and hands it to
  a thread, returning at once while a thread is free. Each thread runs RQ's ``perform_job``: success,
  failure, retries and results are RQ's code. Job timeouts use ``TimerDeathPenalty`` (``SIGALRM``
  reaches only the main thread).
- **Fair between mailboxes.** A notifications job names one mailbox (the receiver writes one job per
  mailbox). At most ``per_mailbox`` jobs of one mailbox run at once here — Graph serves 4 requests
  per mailbox at a time anyway — and further ones wait in that mailbox's line, already started in
  RQ's eyes and kept alive, while the threads serve other mailboxes. So 1,000 messages to one
  mailbox do not hold up the next mailbox's message. At most ``backlog`` jobs wait in lines.
- **Retry-After never holds a thread.** When Graph throttles a mailbox, the request raises
  :class:`MailboxBusy` (workers/graph/limits.py) and the job is rescheduled through RQ's scheduler
  for the end of that mailbox's wait: its retries are not spent, and the thread moves on.
- **Kept alive.** A keeper thread refreshes the heartbeats of the worker and of every job it holds,
  so a job's started entry lapses about ``job_monitoring_interval + 60`` s after the process dies
  (SIGKILL, OOM), and RQ's maintenance in a live worker retries it; the exactly-once markers of
  workers/jobs.py make the retry carry on where the dead process stopped.
- **Warm shutdown.** SIGTERM stops dequeuing; jobs waiting in lines go back to the front of their
  queue at once, running jobs get ``shutdown_seconds`` to finish, and the ones still running are
  handed back the same way before the process exits (Heroku kills 30 s after SIGTERM). A second
  signal hands everything back at once.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import redis
from rq import SimpleWorker
from rq.timeouts import TimerDeathPenalty
from rq.utils import now

from graphhook.core.errors import MailboxBusy
from graphhook.core.notifications import mailbox_key
from workers import metrics
from workers.maintenance import OnScheduleMaintenance
from workers.scheduler import InThreadScheduler
from workers.shutdown import PromptShutdown

log = logging.getLogger("graphhook.worker")

NOTIFICATION_JOB = "workers.jobs.process_notifications"
KEEPALIVE_SECONDS = 10.0  # heartbeats of the worker and of every job it holds
MAX_DEFERRALS = 200  # a job throttled this many times fails like any error (RQ's retries take over)

@dataclass(eq=False)
class Held:
    """A job this process holds: running in a thread, or waiting in its mailbox's line."""

    job: Any
    queue: Any
    execution: Any
    mailbox: str | None
    since: float = field(default_factory=time.monotonic)

class ConcurrentWorker(metrics.Metered, InThreadScheduler, PromptShutdown, OnScheduleMaintenance, SimpleWorker):
    """RQ's non-forking worker with up to ``concurrency`` jobs in flight (threads), fair between mailboxes."""

    death_penalty_class = TimerDeathPenalty

    def __init__(self, queues: Any, *args: Any, concurrency: int | None = None, per_mailbox: int | None = None,
                 backlog: int | None = None, shutdown_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(queues, *args, **kwargs)
        if concurrency is None or per_mailbox is None or backlog is None or shutdown_seconds is None:
            from graphhook.core.settings import Settings  # e.g. in a WorkerPool process: the same environment

            settings = Settings.from_env()
            concurrency = settings.worker_concurrency if concurrency is None else concurrency
            per_mailbox = settings.mailbox_concurrency if per_mailbox is None else per_mailbox
            backlog = settings.worker_backlog if backlog is None else backlog
            shutdown_seconds = settings.worker_shutdown_seconds if shutdown_seconds is None else shutdown_seconds
        if concurrency < 1 or per_mailbox < 1 or backlog < 0 or shutdown_seconds < 0:
            raise ValueError(f"concurrency and per_mailbox must be at least 1 and backlog and shutdown_seconds at "
                             f"least 0, got {concurrency!r}, {per_mailbox!r}, {backlog!r}, {shutdown_seconds!r}")
        self.concurrency, self.per_mailbox, self.backlog = concurrency, per_mailbox, backlog
        self.shutdown_seconds = float(shutdown_seconds)
        self._threads = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="graphhook-job")
        self._cond = threading.Condition()
        self._held: dict[str, Held] = {}  # job id -> held (running or waiting)
        self._running = 0
        self._busy: collections.Counter[str] = collections.Counter()  # mailbox -> its jobs running here
        self._lines: dict[str, collections.deque[Held]] = {}  # mailbox -> its jobs waiting here
        self._waiting = 0
        self._handed_back: set[str] = set()
        self._keeper: threading.Thread | None = None
        self._keeper_stop = threading.Event()
        self._dequeuing = False
        self._cold = False
        self.deferred = 0  # jobs rescheduled for a mailbox's Retry-After (tests, logs)

    # --- what the process holds ----------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Jobs running, jobs waiting in mailbox lines, and mailboxes with a line."""
        with self._cond:
            return {"running": self._running, "waiting": self._waiting, "lines": len(self._lines)}

    def _room(self) -> bool:
        return self._running < self.concurrency and self._waiting <= self.backlog

    @staticmethod
    def mailbox_of(job: Any) -> str | None:
        """The one mailbox a notifications job is about (None for other jobs, or several mailboxes)."""
        try:
            if job.func_name != NOTIFICATION_JOB or not job.args or not isinstance(job.args[0], list):
                return None
            mailboxes = {mailbox_key(item.get("resource")) for item in job.args[0] if isinstance(item, dict)}
        except Exception:  # noqa: BLE001 — unreadable data: RQ's own code fails the job when it runs
            return None
        return mailboxes.pop() if len(mailboxes) == 1 and "" not in mailboxes else None

    # --- RQ's hooks ---------------------------------------------------------------------------
    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        """RQ's blocking dequeue; a SIGTERM arriving meanwhile ends it at once.

        In burst mode (no timeout) the queues count as empty only once no job is held either:
        the jobs still running may queue more work (webhook deliveries).
        """
        while True:
            self._dequeuing = True
            try:
                result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            finally:
                self._dequeuing = False
            if result is not None or timeout is not None or self._stop_requested:
                return result
            with self._cond:
                if not self._held:
                    return None
                while self._held and not self._stop_requested:
                    self._cond.wait(timeout=1.0)

    def execute_job(self, job: Any, queue: Any) -> None:
        """Start ``job`` (or line it up behind its mailbox's running jobs); return once there is room for another."""
        self._start_keeper()
        execution = self.prepare_execution(job)
        try:
            self.prepare_job_execution(job, remove_from_intermediate_queue=len(self.queues) == 1)
        except Exception:  # noqa: BLE001 — e.g. data that is not JSON: RQ's failure path, as in its perform_job
            self._finalize_failure(job, queue, execution, sys.exc_info())
            return
        job._graphhook_started = True  # perform_job in the thread must not prepare it again
        held = Held(job, queue, execution, self.mailbox_of(job))
        with self._cond:
            self._held[job.id] = held
            if held.mailbox and self._busy[held.mailbox] >= self.per_mailbox:
                self._lines.setdefault(held.mailbox, collections.deque()).append(held)
                self._waiting += 1
            else:
                self._start(held)
            while not self._room() and not self._stop_requested:
                self._cond.wait(timeout=1.0)  # wakes when a job ends; the flag is read at least once a second

    def prepare_job_execution(self, job: Any, remove_from_intermediate_queue: bool = False) -> None:
        """RQ's preparation, done once, when the job is taken off the queue (not again in its thread)."""
        if getattr(job, "_graphhook_started", False):
            return
        super().prepare_job_execution(job, remove_from_intermediate_queue)

    def get_heartbeat_ttl(self, job: Any, working_time: float = 0.0) -> int:
        """Held jobs are kept alive by the keeper, so their started entries lapse soon after the process dies."""
        return int(self.job_monitoring_interval + 60)

    def _start(self, held: Held) -> None:
        """Run a held job in a thread (caller holds ``_cond``)."""
        self._running += 1
        if held.mailbox:
            self._busy[held.mailbox] += 1
        self._threads.submit(self._run, held)

    def _run(self, held: Held) -> None:
        try:
            self.perform_job(held.job, held.queue, held.execution)
        except BaseException:  # noqa: BLE001 — RQ handles the job's own errors; this is bookkeeping failing
            log.exception("job %s: the worker could not record its outcome", held.job.id)
        finally:
            with self._cond:
                self._held.pop(held.job.id, None)
                self._running -= 1
                if held.mailbox:
                    self._busy[held.mailbox] -= 1
                    if self._busy[held.mailbox] <= 0:
                        del self._busy[held.mailbox]
                    line = self._lines.get(held.mailbox)
                    if line and not self._stop_requested:
                        self._waiting -= 1
                        following = line.popleft()
                        if not line:
                            del self._lines[held.mailbox]
                        self._start(following)
                self._cond.notify_all()

    def _finalize_success(self, job: Any, queue: Any, execution: Any, return_value: Any) -> None:
        if job.id not in self._handed_back:  # handed back at shutdown: the queue has it again
            super()._finalize_success(job, queue, execution, return_value)

    def _finalize_failure(self, job: Any, queue: Any, execution: Any, exc_info: Any) -> None:
        if job.id in self._handed_back:
            return
        if isinstance(exc_info[1], MailboxBusy) and self._defer(job, queue, execution, exc_info[1]):
            return
        super()._finalize_failure(job, queue, execution, exc_info)

    def _defer(self, job: Any, queue: Any, execution: Any, exc: MailboxBusy) -> bool:
        """Reschedule a job whose mailbox is inside Graph's Retry-After; False once it was deferred too often."""
        count = int(job.meta.get("deferrals", 0)) + 1
        if count > MAX_DEFERRALS:
            return False
        job.meta["deferrals"] = count
        job.ended_at = now()
        when = now() + timedelta(seconds=exc.seconds * random.uniform(1.0, 1.1) + 0.05)  # jitter: not all at once
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            queue.schedule_job(job, when, pipeline=pipe)
            pipe.execute()
        job._graphhook_deferred = True  # metrics.Metered counts it as deferred, not failed
        self.deferred += 1
        log.info("job %s deferred %.1fs: %s", job.id, exc.seconds, exc, extra={"job_id": job.id})
        return True

    # --- heartbeats ---------------------------------------------------------------------------
    def _start_keeper(self) -> None:
        if self._keeper is None:
            self._keeper = threading.Thread(target=self._keep_alive, name="graphhook-keeper", daemon=True)
            self._keeper.start()

    def _keep_alive(self) -> None:
        while not self._keeper_stop.wait(KEEPALIVE_SECONDS):
            self.keep_alive()

    def keep_alive(self) -> None:
        """Refresh the heartbeats of this worker and of every job it holds (one pipelined round trip)."""
        with self._cond:
            held = list(self._held.values())
        try:
            with self.connection.pipeline() as pipe:
                self.heartbeat(pipeline=pipe)
                for item in held:
                    ttl = self.get_heartbeat_ttl(item.job)
                    item.execution.heartbeat(item.queue.started_job_registry, ttl, pipeline=pipe)
                    item.job.heartbeat(now(), ttl, pipeline=pipe, xx=True)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("heartbeat not written (%s); retried in %.0fs", type(exc).__name__, KEEPALIVE_SECONDS)

    # --- shutdown -----------------------------------------------------------------------------
    def _shutdown(self) -> None:
        """Warm shutdown: stop taking jobs (a blocking dequeue ends at once); teardown drains."""
        self._stop_requested = True
        self.log.info("Worker %s: warm shutdown: finishing %d job(s) within %.0fs, handing back the rest",
                      self.name, len(self._held), self.shutdown_seconds)
        if self.scheduler:
            self.stop_scheduler()
        if self._dequeuing:
            from rq.exceptions import StopRequested

            raise StopRequested()

    def request_force_stop(self, signum: int, frame: Any) -> None:
        """A second signal: hand every job back now."""
        self._cold = True
        super().request_force_stop(signum, frame)

    def teardown(self) -> None:
        """Hand back what waits, give running jobs their grace, hand back the rest; then RQ's teardown."""
        left = 0
        try:
            left = self._drain()
        finally:
            self._keeper_stop.set()
            super().teardown()
        if left:
            # Threads still run the handed-back jobs; leaving now stops them before they act again.
            metrics.flush(self.connection)
            logging.shutdown()
            os._exit(0)
        self._threads.shutdown(wait=True)

    def _drain(self) -> int:
        with self._cond:
            self._stop_requested = True
            waiting = [held for line in self._lines.values() for held in line]
            self._lines.clear()
            self._waiting = 0
        for held in waiting:
            self._hand_back(held)
        deadline = time.monotonic() + (0.0 if self._cold else self.shutdown_seconds)
        try:
            with self._cond:
                while self._running and time.monotonic() < deadline and not self._cold:
                    self._cond.wait(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
        except SystemExit:  # a second signal while waiting
            self._cold = True
        with self._cond:
            running = [held for held in self._held.values() if held.job.id not in self._handed_back]
        for held in running:
            self._hand_back(held)
        if waiting or running:
            log.warning("worker %s: handed %d waiting and %d running job(s) back to their queues",
                        self.name, len(waiting), len(running))
        return len(running)

    def _hand_back(self, held: Held) -> None:
        """Put a held job back at the front of its queue, as if never taken (its claims let a retry go on)."""
        self._handed_back.add(held.job.id)
        try:
            with self.connection.pipeline() as pipe:
                held.queue.enqueue_job(held.job, pipeline=pipe, at_front=True)  # opens the transaction (MULTI)
                self.cleanup_execution(held.job, pipeline=pipe, execution=held.execution)
                pipe.execute()
        except redis.RedisError as exc:  # RQ's maintenance retries it once its heartbeat lapses
            log.error("job %s not handed back (%s: %s): it is retried after its heartbeat lapses",
                      held.job.id, type(exc).__name__, exc)

        with self._cond:
            self._held.pop(held.job.id, None)
