"""The RQ worker process for graphhook's queue."""

from __future__ import annotations

import logging

from rq import SimpleWorker, Worker

from graphhook.core import jobformat
from graphhook.core.settings import Settings
from workers import metrics, runtime
from workers.records import rich
from workers.triggers.config import config_for

log = logging.getLogger("graphhook.worker")


def run_worker(settings: Settings, *, burst: bool = False, simple: bool = False) -> int:
    """Work the queue until stopped (or empty with ``burst``); RQ finishes the current job on SIGTERM."""
    settings.require("REDIS_URL")
    settings.require_graph()
    # Fail at start, naming the file, rule and field, rather than on the first job.
    config_for(settings.config_path)
    rich.preload(settings)  # likewise unusable decryption keys (GRAPHHOOK_ENCRYPTION_KEYS)
    ctx = runtime.build(settings)
    runtime.install(ctx)
    metrics.use_redis(ctx.redis)
    worker_class = metrics.metered(SimpleWorker if simple else Worker)  # job durations and failures
    # Maintenance is when RQ retries the jobs of workers that died (SIGKILL, OOM) once their heartbeat lapsed.
    worker = worker_class([settings.queue_name], connection=ctx.redis, **jobformat.WORKER_OPTIONS,  # JSON jobs only
                          maintenance_interval=max(1, settings.worker_maintenance_seconds))
    worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)
    return 0
