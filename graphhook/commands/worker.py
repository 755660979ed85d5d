"""``graphhook worker [--burst] [--concurrency N] [--processes N] [--simple | --fork]``: RQ workers for graphhook."""

from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="RQ worker for graphhook's queue (GRAPHHOOK_QUEUE)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument("--concurrency", type=int, default=None, metavar="N",
                   help="jobs in flight per process (default GRAPHHOOK_WORKER_CONCURRENCY, 32): they mostly wait "
                        "on Graph, so one process keeps many going")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--processes", type=int, default=0, metavar="N",
                      help="N supervised worker processes, each with --concurrency jobs in flight; a dead one "
                           "is replaced")
    mode.add_argument("--simple", action="store_true", help="one job at a time, in this process")
    mode.add_argument("--fork", action="store_true", help="one job at a time, each in a forked work horse (RQ's "
                                                          "default model)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from graphhook.core.errors import ConfigError
    from graphhook.core.settings import MAX_WORKER_CONCURRENCY, Settings

    if args.concurrency is not None:
        if not 1 <= args.concurrency <= MAX_WORKER_CONCURRENCY:
            raise ConfigError(f"--concurrency must be between 1 and {MAX_WORKER_CONCURRENCY} (jobs in flight per "
                              f"process; add processes for more), got {args.concurrency!r}")
        if args.simple or args.fork:
            raise ConfigError("--concurrency applies to the default worker; --simple and --fork run one job at a time")
        os.environ["GRAPHHOOK_WORKER_CONCURRENCY"] = str(args.concurrency)  # also what --processes children read
    settings = Settings.from_env()
    if args.processes:
        if args.processes < 1:
            raise ConfigError(f"--processes must be at least 1, got {args.processes!r}")
        from workers.pool import run as run_pool

        return run_pool(settings, processes=args.processes, burst=args.burst)
    from ..worker import run_worker

    return run_worker(settings, burst=args.burst, mode="simple" if args.simple else "fork" if args.fork else "concurrent")
