"""``graphhook subscriptions list|create|renew|delete|reconcile``.

``create`` only creates what the renewer keeps: a mailbox and folder listed under ``mailboxes`` in
``GRAPHHOOK_CONFIG``. The renewer deletes every subscription not listed there, so a one-off
subscription would vanish at its next pass; ``create`` refuses one and says what to add to the file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from graphhook.output import add_format_flags, is_terminal, pairs, print_json, table

JSON_WHEN_PIPED = ("list", "create", "reconcile")  # what printed JSON before --json existed


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``graphhook subscriptions``."""
    p = sub.add_parser("subscriptions", help="manage Graph subscriptions",
                       description="create only accepts a mailbox and folder listed under 'mailboxes' in "
                                   "GRAPHHOOK_CONFIG: the renewer deletes every subscription not listed there.")
    p.add_argument("action", choices=["list", "create", "renew", "delete", "reconcile"])
    p.add_argument("--mailbox", help="mailbox address (create; must be in the configuration's mailboxes)")
    p.add_argument("--folder", default="inbox", help="folder (create; default inbox)")
    p.add_argument("--id", help="subscription id (renew, delete; renew without --id renews all)")
    add_format_flags(p)
    p.set_defaults(func=run)


def _state(record, at_graph: dict, now: dt.datetime, margin: dt.timedelta) -> str:
    if record.id not in at_graph:
        return "missing"
    if record.state != "active":
        return record.state
    left = record.expires() - now
    return "expired" if left <= dt.timedelta(0) else "expiring" if left <= margin else "active"


def check_desired(config_path: str, mailbox: str, folder: str) -> None:
    """Refuse a mailbox/folder the renewer would delete: it must be listed in the configuration file."""
    from graphhook.core.errors import ConfigError
    from workers.subscriptions.tenants import desired_from_config

    wanted = {(m.strip().lower(), f.strip().lower()) for m, f in desired_from_config(config_path)}
    if (mailbox.strip().lower(), folder.strip().lower()) not in wanted:
        raise ConfigError(
            f"{mailbox}/{folder} is not under 'mailboxes' in {config_path} (GRAPHHOOK_CONFIG), and the renewer "
            f"deletes every subscription not listed there. Add it to that file:\n"
            f"  mailboxes:\n    - address: {mailbox.strip()}\n      folders: [{folder.strip()}]\n"
            f"then run: graphhook subscriptions reconcile (or let the renewer create it)")


def run(args: argparse.Namespace) -> int:
    """Run one subscriptions action; tables on a terminal, JSON with --json."""
    from graphhook.core.errors import ConfigError
    from graphhook.core.settings import Settings
    from workers import runtime
    from workers.subscriptions import operations, registry, tenants

    as_json = args.json or (not args.table and not is_terminal() and args.action in JSON_WHEN_PIPED)
    settings = Settings.from_env()
    settings.require("REDIS_URL")
    if args.action == "create":
        if not args.mailbox:
            raise ConfigError("subscriptions create needs --mailbox ADDRESS")
        check_desired(settings.config_path, args.mailbox, args.folder)
    ctx = runtime.build(settings)
    if args.action == "create":
        record = operations.create(ctx.graph, ctx.redis, settings, args.mailbox.strip(), args.folder.strip())
        _show(record.public(), as_json)
    elif args.action == "list":
        rows = _list(ctx, settings, registry)
        if as_json:
            print_json(rows)
        elif rows:
            table(rows, ["id", "mailbox", "folder", "state", "expiration", "lastRenewal"])
        else:
            print("no subscriptions (the renewer creates those listed under 'mailboxes' in GRAPHHOOK_CONFIG)")
    elif args.action == "renew":
        records = [r for r in registry.all_records(ctx.redis) if not args.id or r.id == args.id]
        if args.id and not records:
            raise ConfigError(f"no registered subscription {args.id!r}; see: graphhook subscriptions list")
        rows = []
        for record in records:
            renewed = operations.renew(ctx.graph, ctx.redis, record)
            rows.append({"id": renewed.id, "mailbox": renewed.mailbox, "folder": renewed.folder,
                         "expiration": renewed.expiration})
        if as_json:
            print_json(rows)
        else:
            for row in rows:
                print(f"renewed {row['id']} until {row['expiration']}")
            if not rows:
                print("no registered subscriptions to renew")
    elif args.action == "delete":
        if not args.id:
            raise ConfigError("subscriptions delete needs --id SUBSCRIPTION_ID (see: graphhook subscriptions list)")
        operations.delete(ctx.graph, ctx.redis, args.id)
        print_json({"id": args.id, "deleted": True}) if as_json else print(f"deleted {args.id}")
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
            report = tenants.from_settings(ctx, heartbeat=lock.acquire).reconcile()
        finally:
            lock.release()
        _show(dict(report.__dict__), as_json)
        return 1 if report.failed else 0
    return 0


def _show(values: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(values)
    else:
        pairs({k: ", ".join(map(str, v)) if isinstance(v, (list, tuple))
               else ", ".join(f"{n}: {state}" for n, state in v.items()) if isinstance(v, dict) else v
               for k, v in values.items()})


def _list(ctx: Any, settings: Any, registry: Any) -> list[dict[str, Any]]:
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
    return rows
