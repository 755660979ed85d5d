"""``graphhook renewer [--once]``: keep subscriptions alive (create, renew, recreate, delete orphans, resync)."""

from __future__ import annotations

import argparse
import signal
import threading


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("renewer", help="renew, reauthorize, recreate and reconcile subscriptions")
    p.add_argument("--once", action="store_true", help="one reconcile pass, then exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from graphhook.core.settings import Settings
    from workers import runtime
    from workers.subscriptions import renewer

    settings = Settings.from_env()
    settings.require("REDIS_URL", "PUBLIC_URL")
    ctx = runtime.build(settings)
    runtime.install(ctx)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    renewer.from_settings(ctx).run(once=args.once, interval=settings.renew_interval_seconds, stop=stop)
    return 0
