"""The RQ worker process for graphhook's queue."""

from __future__ import annotations

import logging

from rq import SimpleWorker, Worker

from receiver.settings import Settings
from workers import metrics, runtime

log = logging.getLogger("graphhook.worker")


def run_worker(settings: Settings, *, burst: bool = False, simple: bool = False) -> int:
    """Work the queue until stopped (or empty with ``burst``); RQ finishes the current job on SIGTERM."""
    settings.require("REDIS_URL")
    settings.require_graph()
    ctx = runtime.build(settings)
    runtime.install(ctx)
    metrics.use_redis(ctx.redis)
    worker_class = metrics.metered(SimpleWorker if simple else Worker)  # job durations and failures
    worker = worker_class([settings.queue_name], connection=ctx.redis)
    worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)
    return 0
