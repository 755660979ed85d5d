"""``graphhook worker [--burst] [--simple | --processes N]``: RQ workers for graphhook's queue."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="RQ worker for graphhook's queue")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--simple", action="store_true",
                      help="run jobs in this process instead of forking one per job (fastest; Procfile default)")
    mode.add_argument("--processes", type=int, default=0, metavar="N",
                      help="N supervised non-forking worker processes; a dead one is replaced")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from graphhook.core.errors import ConfigError
    from graphhook.core.settings import Settings

    settings = Settings.from_env()
    if args.processes:
        if args.processes < 1:
            raise ConfigError(f"--processes must be at least 1, got {args.processes!r}")
        from workers.pool import run as run_pool

        return run_pool(settings, processes=args.processes, burst=args.burst)
    from ..worker import run_worker

    return run_worker(settings, burst=args.burst, simple=args.simple)
