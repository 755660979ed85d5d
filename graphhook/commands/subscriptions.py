"""``graphhook subscriptions list|create|delete``."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("subscriptions", help="manage Graph subscriptions")
    p.add_argument("action", choices=["list", "create", "delete"])
    p.add_argument("--mailbox", help="mailbox address (create)")
    p.add_argument("--folder", default="inbox", help="folder (create; default inbox)")
    p.add_argument("--id", help="subscription id (delete)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from receiver.errors import ConfigError
    from receiver.settings import Settings
    from workers import runtime, subscriptions

    settings = Settings.from_env()
    settings.require("REDIS_URL")
    ctx = runtime.build(settings)
    if args.action == "create":
        if not args.mailbox:
            raise ConfigError("subscriptions create needs --mailbox ADDRESS")
        sub = subscriptions.create(ctx.graph, ctx.redis, settings, args.mailbox, args.folder)
        print(json.dumps(sub.__dict__, indent=2))
    elif args.action == "list":
        print(json.dumps(list(ctx.graph.paged("subscriptions")), indent=2))
    elif args.action == "delete":
        if not args.id:
            raise ConfigError("subscriptions delete needs --id SUBSCRIPTION_ID")
        ctx.graph.delete(f"subscriptions/{args.id}")
        print(f"deleted {args.id}")
    return 0
