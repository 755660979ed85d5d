"""Several supervised worker processes: a worker that dies is replaced.

Each process is a :class:`workers.concurrent.ConcurrentWorker` (no fork per job, many jobs in
flight) that reuses its :mod:`workers.runtime` context, and RQ's ``WorkerPool`` supervises
them: when one dies (segfault, OOM kill, ``os._exit`` in a job) the pool starts a new one. The
jobs it held are *abandoned*; RQ's started-job cleanup puts them back on the queue
(``process_notifications`` declares a retry policy when enqueued without one) and the jobs'
exactly-once claims let the retries carry on where they stopped. A Python exception in a job
never kills the process: RQ records it and retries.
"""

from __future__ import annotations

import argparse
import logging
import os

from rq.worker_pool import WorkerPool

from graphhook.core import jobformat, logs
from graphhook.core.redisconn import connect
from graphhook.core.settings import Settings
from workers import runtime
from workers.concurrent import ConcurrentWorker
from workers.records import rich
from workers.triggers.config import config_for

log = logging.getLogger("graphhook.pool")


def run(settings: Settings, *, processes: int = 1, burst: bool = False) -> int:
    """Run ``processes`` non-forking workers on graphhook's queue until stopped (or empty with ``burst``)."""
    settings.require("REDIS_URL")
    runtime.require_graph(settings)
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes!r}")
    config_for(settings.config_path)  # a broken configuration stops the worker at start, not on the first job
    rich.preload(settings)  # likewise unusable decryption keys (GRAPHHOOK_ENCRYPTION_KEYS)
    # Each worker process builds its own context on its first job (workers.runtime.context):
    # sockets, TLS sessions and locks are never shared across processes.
    pool = WorkerPool(settings.queues, connection=connect(settings), num_workers=processes,
                      worker_class=PoolWorker, **jobformat.WORKER_OPTIONS)
    pool.start(burst=burst, logging_level=settings.log_level)
    return 0


class PoolWorker(ConcurrentWorker):
    """A pool's worker process: throttled mailboxes' jobs are deferred, as in ``graphhook worker``."""

    def execute_job(self, job, queue):  # type: ignore[no-untyped-def]
        """Build this process's context on its first job, with deferral of throttled mailboxes on."""
        from workers import metrics, runtime

        ctx = runtime.context()
        if not ctx.graph.defer_throttled:
            ctx.graph.defer_throttled = True
            metrics.use_redis(ctx.redis)
        super().execute_job(job, queue)


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
