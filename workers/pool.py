"""The worker process model: no fork per job, and a worker that dies is replaced.

RQ's default ``Worker`` forks a work horse for every job (about 11 ms per no-op
job on the reference machine against about 2 ms for ``SimpleWorker``, see
``benchmarks/worker_cpu.py``), and each fork starts without the parent's warm
HTTP connections and in-memory token. Here each worker process is a
``SimpleWorker`` that runs jobs itself, reusing its :mod:`workers.runtime`
context, and RQ's ``WorkerPool`` supervises them: when one dies (segfault, OOM
kill, ``os._exit`` in a job) the pool starts a new one. The job that was
running is *abandoned*; RQ's started-job cleanup puts it back on the queue
(``process_notifications`` declares a retry policy when enqueued without one)
and the job's exactly-once claims let the retry carry on where it stopped.
A Python exception in a job never kills the process: RQ records it and retries.
"""

from __future__ import annotations

import argparse
import logging
import os

from rq.worker_pool import WorkerPool

from graphhook.core import jobformat, logs
from graphhook.core.redisconn import connect
from graphhook.core.settings import Settings
from workers.metrics import MeteredSimpleWorker
from workers.records import rich
from workers.triggers.config import config_for

log = logging.getLogger("graphhook.pool")


def run(settings: Settings, *, processes: int = 1, burst: bool = False) -> int:
    """Run ``processes`` non-forking workers on graphhook's queue until stopped (or empty with ``burst``)."""
    settings.require("REDIS_URL")
    settings.require_graph()
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes!r}")
    config_for(settings.config_path)  # a broken configuration stops the worker at start, not on the first job
    rich.preload(settings)  # likewise unusable decryption keys (GRAPHHOOK_ENCRYPTION_KEYS)
    # Each worker process builds its own context on its first job (workers.runtime.context):
    # sockets, TLS sessions and locks are never shared across processes.
    pool = WorkerPool([settings.queue_name], connection=connect(settings), num_workers=processes,
                      worker_class=MeteredSimpleWorker, **jobformat.WORKER_OPTIONS)  # SimpleWorker with job metrics
    pool.start(burst=burst, logging_level=settings.log_level)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m workers.pool [--processes N] [--burst]``."""
    parser = argparse.ArgumentParser(prog="python -m workers.pool", description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logs.configure(settings, process="worker", env=os.environ)
    return run(settings, processes=args.processes, burst=args.burst)


if __name__ == "__main__":
    raise SystemExit(main())
