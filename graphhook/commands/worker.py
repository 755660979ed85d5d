"""``graphhook worker [--burst]``: an RQ worker for graphhook's queue."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="RQ worker for graphhook's queue")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument("--simple", action="store_true", help="run jobs in this process instead of forking")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from receiver.settings import Settings

    from ..worker import run_worker

    return run_worker(Settings.from_env(), burst=args.burst, simple=args.simple)
