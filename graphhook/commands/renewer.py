"""``graphhook renewer [--once]``: keep every tenant's subscriptions alive (create, renew, recreate, delete orphans,
resync); each pass re-reads the configuration's tenants (workers/subscriptions/tenants.py)."""

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
    from workers.subscriptions import tenants

    settings = Settings.from_env()
    settings.require("REDIS_URL", "PUBLIC_URL")
    ctx = runtime.build(settings)
    runtime.install(ctx)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    tenants.from_settings(ctx).run(once=args.once, interval=settings.renew_interval_seconds, stop=stop)
    return 0
