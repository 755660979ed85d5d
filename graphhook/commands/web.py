"""``graphhook web``: development server for the receiver (production: gunicorn)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("web", help="development server for the receiver (production: gunicorn)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from graphhook.core.settings import Settings
    from receiver.app import create_app

    settings = Settings.from_env()
    settings.require("REDIS_URL")
    create_app(settings).run(host=args.host, port=args.port)
    return 0
