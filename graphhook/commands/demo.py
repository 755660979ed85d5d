"""``graphhook demo [--messages N]``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole pipeline on this machine, against the emulator")
    p.add_argument("--messages", type=int, default=20, help="messages to deliver (default 20)")
    p.add_argument("--workers", type=int, default=2, help="RQ worker processes (default 2)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for every trigger (default 120)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo(messages=args.messages, workers=args.workers, timeout=args.timeout)
