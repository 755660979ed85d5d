"""``graphhook subscriptions list|create|renew|delete|reconcile``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from graphhook.output import table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("subscriptions", help="manage Graph subscriptions")
    p.add_argument("action", choices=["list", "create", "renew", "delete", "reconcile"])
    p.add_argument("--mailbox", help="mailbox address (create)")
    p.add_argument("--folder", default="inbox", help="folder (create; default inbox)")
    p.add_argument("--id", help="subscription id (renew, delete; renew without --id renews all)")
    p.add_argument("--table", action="store_true", help="list as a table instead of JSON")
    p.set_defaults(func=run)


def _state(record, at_graph: dict, now: dt.datetime, margin: dt.timedelta) -> str:
    if record.id not in at_graph:
        return "missing"
    if record.state != "active":
        return record.state
    left = record.expires() - now
    return "expired" if left <= dt.timedelta(0) else "expiring" if left <= margin else "active"


def run(args: argparse.Namespace) -> int:
    from graphhook.core.errors import ConfigError
    from graphhook.core.settings import Settings
    from workers import runtime
    from workers.subscriptions import operations, registry, renewer

    settings = Settings.from_env()
    settings.require("REDIS_URL")
    ctx = runtime.build(settings)
    if args.action == "create":
        if not args.mailbox:
            raise ConfigError("subscriptions create needs --mailbox ADDRESS")
        record = operations.create(ctx.graph, ctx.redis, settings, args.mailbox, args.folder)
        print(json.dumps(record.public(), indent=2))
    elif args.action == "list":
        now = dt.datetime.now(dt.timezone.utc)
        margin = dt.timedelta(minutes=settings.renew_margin_minutes)
        at_graph = {s["id"]: s for s in ctx.graph.paged("subscriptions")}
        rows = []
        for record in registry.all_records(ctx.redis):
            rows.append({"id": record.id, "mailbox": record.mailbox, "folder": record.folder,
                         "resource": record.resource, "expiration": record.expiration,
                         "state": _state(record, at_graph, now, margin), "lastRenewal": record.renewed_at or "never",
                         "createdAt": record.created_at})
        known = {r["id"] for r in rows}
        for sid, sub in at_graph.items():
            if sid not in known:
                rows.append({"id": sid, "mailbox": "", "folder": "", "resource": sub.get("resource", ""),
                             "expiration": sub.get("expirationDateTime", ""), "state": "unregistered",
                             "lastRenewal": "", "createdAt": ""})
        if args.table:
            table(rows, ["id", "mailbox", "folder", "state", "expiration", "lastRenewal"])
        else:
            print(json.dumps(rows, indent=2))
    elif args.action == "renew":
        records = [r for r in registry.all_records(ctx.redis) if not args.id or r.id == args.id]
        if args.id and not records:
            raise ConfigError(f"no registered subscription {args.id!r}")
        for record in records:
            renewed = operations.renew(ctx.graph, ctx.redis, record)
            print(f"renewed {renewed.id} until {renewed.expiration}")
    elif args.action == "delete":
        if not args.id:
            raise ConfigError("subscriptions delete needs --id SUBSCRIPTION_ID")
        operations.delete(ctx.graph, ctx.redis, args.id)
        print(f"deleted {args.id}")
    elif args.action == "reconcile":
        settings.require("PUBLIC_URL")
        from graphhook.core import keys
        from workers.subscriptions.leader import LeaderLock

        lock = LeaderLock(ctx.redis, keys.RENEWER_LOCK, ttl=120)
        if not lock.acquire():
            print(f"a renewer ({lock.holder()}) is active and reconciles on its own; not running a second pass",
                  file=sys.stderr)
            return 1
        try:
            report = renewer.from_settings(ctx, heartbeat=lock.acquire).reconcile()
        finally:
            lock.release()
        print(json.dumps(report.__dict__, indent=2))
        return 1 if report.failed else 0
    return 0
