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
    from receiver.metrics import serve_private

    settings = Settings.from_env()
    settings.require("REDIS_URL")
    app = create_app(settings)
    # As under gunicorn: metrics on the private listener (one process: the app's own registry, Redis's included).
    if serve_private(settings, app.config["METRICS"].registry):
        print(f"metrics on http://{settings.metrics_bind}:{settings.metrics_port}/metrics")
    app.run(host=args.host, port=args.port)
    return 0
