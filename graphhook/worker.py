"""The RQ worker process for graphhook's queue."""

from __future__ import annotations

import logging

from rq import SimpleWorker, Worker

from graphhook.core import jobformat
from graphhook.core.settings import Settings
from workers import metrics, runtime
from workers.concurrent import ConcurrentWorker
from workers.records import rich
from workers.triggers.config import config_for

log = logging.getLogger("graphhook.worker")


def run_worker(settings: Settings, *, burst: bool = False, mode: str = "concurrent") -> int:
    """Work the queue until stopped (or empty with ``burst``).

    ``mode``: ``concurrent`` (default: ``GRAPHHOOK_WORKER_CONCURRENCY`` jobs in flight, workers/concurrent.py),
    ``simple`` (one job at a time in this process) or ``fork`` (RQ's work horse per job).
    """
    settings.require("REDIS_URL")
    runtime.require_graph(settings)
    # Fail at start, naming the file, rule and field, rather than on the first job.
    config_for(settings.config_path)
    rich.preload(settings)  # likewise unusable decryption keys (GRAPHHOOK_ENCRYPTION_KEYS)
    ctx = runtime.build(settings)
    runtime.install(ctx)
    metrics.use_redis(ctx.redis)
    # Maintenance is when RQ retries the jobs of workers that died (SIGKILL, OOM) once their heartbeat lapsed.
    options = {**jobformat.WORKER_OPTIONS, "maintenance_interval": max(1, settings.worker_maintenance_seconds)}
    if mode == "concurrent":
        ctx.graph.defer_throttled = True  # a throttled mailbox's job is rescheduled, no thread sleeps
        worker = ConcurrentWorker(settings.queues, connection=ctx.redis, concurrency=settings.worker_concurrency,
                                  per_mailbox=settings.mailbox_concurrency, backlog=settings.worker_backlog,
                                  shutdown_seconds=settings.worker_shutdown_seconds, **options)
    else:
        worker_class = metrics.metered(SimpleWorker if mode == "simple" else Worker)  # job durations and failures
        worker = worker_class(settings.queues, connection=ctx.redis, **options)
    worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)
    return 0
