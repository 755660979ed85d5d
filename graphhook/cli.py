"""``graphhook`` command line: one sub-command per process type or operator task.

Settings are read once here, at the entry point, and passed down.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from typing import Sequence

from receiver.errors import ConfigError, GraphhookError
from receiver.settings import Settings

log = logging.getLogger("graphhook")


def _setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level, logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(messages=args.messages, workers=args.workers, timeout=args.timeout)


def cmd_emulator(args: argparse.Namespace) -> int:
    from emulator import Emulator
    from emulator.seed import seed

    emu = Emulator(args.workdir, host=args.host, port=args.port,
                   client_id=args.client_id, client_secret=args.client_secret, tenant_id=args.tenant_id)
    emu.start()
    seed(emu)
    print(f"Graph emulator listening on {emu.url}")
    print(f"CA certificate: {emu.ca_path}")
    print("Environment for graphhook:")
    for name, value in emu.environment().items():
        print(f"  export {name}={value}")
    sys.stdout.flush()
    stop = False

    def _stop(*_a: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop:
        time.sleep(0.2)
    emu.stop()
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    from receiver.app import create_app

    settings = Settings.from_env()
    settings.require("REDIS_URL")
    create_app(settings).run(host=args.host, port=args.port)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from .worker import run_worker

    settings = Settings.from_env()
    _setup_logging(settings.log_level)
    return run_worker(settings, burst=args.burst, simple=args.simple)


def cmd_subscriptions(args: argparse.Namespace) -> int:
    from workers import runtime, subscriptions

    settings = Settings.from_env()
    settings.require("REDIS_URL")
    ctx = runtime.build(settings)
    if args.action == "create":
        sub = subscriptions.create(ctx.graph, ctx.redis, settings, args.mailbox, args.folder)
        print(json.dumps(sub.__dict__, indent=2))
    elif args.action == "list":
        print(json.dumps(list(ctx.graph.paged("subscriptions")), indent=2))
    elif args.action == "delete":
        ctx.graph.delete(f"subscriptions/{args.id}")
        print(f"deleted {args.id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphhook", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="the whole pipeline on this machine, against the emulator")
    p.add_argument("--messages", type=int, default=20, help="messages to deliver (default 20)")
    p.add_argument("--workers", type=int, default=2, help="RQ worker processes (default 2)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for every trigger (default 120)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("emulator", help="run the Graph emulator over HTTPS")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--workdir", default=None, help="where the CA and certificates are written")
    p.add_argument("--tenant-id", default=None)
    p.add_argument("--client-id", default=None)
    p.add_argument("--client-secret", default=None)
    p.set_defaults(func=cmd_emulator)

    p = sub.add_parser("web", help="development server for the receiver (production: gunicorn)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_web)

    p = sub.add_parser("worker", help="RQ worker for graphhook's queue")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument("--simple", action="store_true", help="run jobs in this process instead of forking")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("subscriptions", help="manage Graph subscriptions")
    p.add_argument("action", choices=["list", "create", "delete"])
    p.add_argument("--mailbox", help="mailbox address (create)")
    p.add_argument("--folder", default="inbox", help="folder (create; default inbox)")
    p.add_argument("--id", help="subscription id (delete)")
    p.set_defaults(func=cmd_subscriptions)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"graphhook: configuration error: {exc}", file=sys.stderr)
        return 2
    except GraphhookError as exc:
        print(f"graphhook: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
