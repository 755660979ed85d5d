"""``graphhook subscriptions list|create|renew|delete|reconcile``.

``create`` only creates what the renewer keeps: a mailbox and folder listed under ``mailboxes`` in
``GRAPHHOOK_CONFIG`` (the tenant's, when ``tenants:`` is declared). The renewer deletes every
subscription not listed there, so a one-off subscription would vanish at its next pass; ``create``
refuses one and says what to add to the file.
``--tenant`` names the tenant acted in (required for changes when several are configured); ``list``
without it shows every tenant's, with a TENANT column when there are several (``tenant`` in JSON).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from graphhook.output import add_format_flags, is_terminal, pairs, print_json, table

from . import tenancy

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
    tenancy.add_tenant_flag(p, help="the configured tenant (required to change subscriptions when several are "
                                    "configured; list and reconcile without it: every tenant's)")
    add_format_flags(p)
    p.set_defaults(func=run)


def _state(record, at_graph: dict | None, now: dt.datetime, margin: dt.timedelta) -> str:
    if at_graph is None:
        return "unchecked"  # Graph's list of this tenant could not be read (said on stderr)
    if record.id not in at_graph:
        return "missing"
    if record.state != "active":
        return record.state
    left = record.expires() - now
    return "expired" if left <= dt.timedelta(0) else "expiring" if left <= margin else "active"


def check_desired(tenant: Any, config_path: str, mailbox: str, folder: str) -> None:
    """Refuse a mailbox/folder the renewer would delete: it must be listed under the tenant's mailboxes."""
    from graphhook.core.errors import ConfigError

    wanted = {(m.strip().lower(), f.strip().lower()) for m, f in tenancy.desired(tenant)}
    if (mailbox.strip().lower(), folder.strip().lower()) not in wanted:
        where = "'mailboxes'" if tenant.name == "default" else f"tenant {tenant.name!r}'s 'mailboxes'"
        indent = "" if tenant.name == "default" else "    "
        head = "" if tenant.name == "default" else f"  tenants:\n    {tenant.name}:\n"
        raise ConfigError(
            f"{mailbox}/{folder} is not under {where} in {config_path} (GRAPHHOOK_CONFIG), and the renewer "
            f"deletes every subscription not listed there. Add it to that file:\n{head}"
            f"{indent}  mailboxes:\n{indent}    - address: {mailbox.strip()}\n"
            f"{indent}      folders: [{folder.strip()}]\n"
            f"then run: graphhook subscriptions reconcile (or let the renewer create it)")


def run(args: argparse.Namespace) -> int:
    """Run one subscriptions action; tables on a terminal, JSON with --json."""
    from graphhook.core.errors import ConfigError
    from graphhook.core.settings import Settings
    from workers.subscriptions import operations, registry

    as_json = args.json or (not args.table and not is_terminal() and args.action in JSON_WHEN_PIPED)
    settings = Settings.from_env()
    settings.require("REDIS_URL")
    if args.action == "list":
        return _list(args, settings, as_json)
    if args.action == "reconcile" and not args.tenant:
        return _reconcile_all(settings, as_json)
    tenant = tenancy.chosen(settings, args.tenant)  # changes are made in one tenant, named when several exist
    if args.action == "create":
        if not args.mailbox:
            raise ConfigError("subscriptions create needs --mailbox ADDRESS")
        check_desired(tenant, settings.config_path, args.mailbox, args.folder)
    ctx = tenancy.context(settings, args.tenant)
    if args.action == "create":
        record = operations.create(ctx.graph, ctx.redis, ctx.settings, args.mailbox.strip(), args.folder.strip())
        _show(record.public(), as_json)
    elif args.action == "renew":
        records = [r for r in registry.all_records(ctx.redis) if not args.id or r.id == args.id]
        if args.id and not records:
            raise ConfigError(f"no registered subscription {args.id!r}; see: graphhook subscriptions list")
        if args.id:
            _same_tenant(records[0], ctx.tenant)
        rows = []
        for record in (r for r in records if r.tenant == ctx.tenant):
            renewed = operations.renew(ctx.graph, ctx.redis, record)
            rows.append({"id": renewed.id, "tenant": renewed.tenant, "mailbox": renewed.mailbox,
                         "folder": renewed.folder, "expiration": renewed.expiration})
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
        found = registry.load(ctx.redis, args.id)
        if found is not None:
            _same_tenant(found, ctx.tenant)
        operations.delete(ctx.graph, ctx.redis, args.id)
        print_json({"id": args.id, "deleted": True}) if as_json else print(f"deleted {args.id}")
    elif args.action == "reconcile":
        return _reconcile(ctx, tenant, as_json)
    return 0


def _same_tenant(record: Any, tenant: str) -> None:
    """Refuse to act on a subscription of another tenant (its id was given with the wrong --tenant)."""
    from graphhook.core.errors import ConfigError

    if record.tenant != tenant:
        raise ConfigError(f"subscription {record.id!r} belongs to tenant {record.tenant!r}, not {tenant!r}; "
                          f"use --tenant {record.tenant}")


def _reconcile(ctx: Any, tenant: Any, as_json: bool) -> int:
    """One reconcile pass of one tenant, unless a renewer is active (it reconciles on its own)."""
    import datetime as dt

    from graphhook.core import keys
    from workers.subscriptions.leader import LeaderLock
    from workers.subscriptions.renewer import Renewer

    ctx.settings.require("PUBLIC_URL")
    lock = LeaderLock(ctx.redis, keys.RENEWER_LOCK, ttl=120)
    if not lock.acquire():
        print(f"a renewer ({lock.holder()}) is active and reconciles on its own; not running a second pass",
              file=sys.stderr)
        return 1
    s = ctx.settings
    try:
        report = Renewer(ctx, tenancy.desired(tenant), margin=dt.timedelta(minutes=s.renew_margin_minutes),
                         resync_every=dt.timedelta(minutes=s.resync_every_minutes), heartbeat=lock.acquire).reconcile()
    finally:
        lock.release()
    _show({"tenant": tenant.name, **report.__dict__}, as_json)
    return 1 if report.failed else 0


def _reconcile_all(settings: Any, as_json: bool) -> int:
    """One renewer pass over every tenant (workers/subscriptions/tenants.py), unless a renewer is active."""
    from graphhook.core import keys
    from workers import runtime
    from workers.subscriptions import tenants
    from workers.subscriptions.leader import LeaderLock

    settings.require("PUBLIC_URL")
    ctx = runtime.build(settings)
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


def _show(values: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(values)
    else:
        pairs({k: ", ".join(map(str, v)) if isinstance(v, (list, tuple))
               else ", ".join(f"{n}: {state}" for n, state in v.items()) if isinstance(v, dict) else v
               for k, v in values.items()})


def _list(args: argparse.Namespace, settings: Any, as_json: bool) -> int:
    """Every registered subscription (of ``--tenant``, or of every tenant) next to what Graph lists for its tenant."""
    from graphhook.core.errors import AuthError, GraphError
    from workers import runtime
    from workers.subscriptions import registry

    tenants = [tenancy.chosen(settings, args.tenant)] if args.tenant else list(tenancy.configured(settings))
    ctx = runtime.build(settings)
    now = dt.datetime.now(dt.timezone.utc)
    margin = dt.timedelta(minutes=settings.renew_margin_minutes)
    names = {t.name for t in tenants}
    records = [r for r in registry.all_records(ctx.redis) if r.tenant in names or not args.tenant]
    rows = []
    for tenant in tenants:
        tctx = ctx.for_tenant(tenant.name)
        tctx.settings.require_graph()
        try:  # what this tenant's token sees; a tenant whose consent is gone must not hide the others
            at_graph: dict[str, Any] | None = {s["id"]: s for s in tctx.graph.paged("subscriptions")}
        except (AuthError, GraphError) as exc:
            print(f"graphhook: tenant {tenant.name}: Graph's subscriptions could not be listed: {exc}", file=sys.stderr)
            at_graph = None
        for record in (r for r in records if r.tenant == tenant.name):
            rows.append({"id": record.id, "tenant": record.tenant, "mailbox": record.mailbox,
                         "folder": record.folder, "resource": record.resource, "expiration": record.expiration,
                         "state": _state(record, at_graph, now, margin), "lastRenewal": record.renewed_at or "never",
                         "createdAt": record.created_at})
        known = {r.id for r in records}
        for sid, sub in (at_graph or {}).items():
            if sid not in known:
                rows.append({"id": sid, "tenant": tenant.name, "mailbox": "", "folder": "",
                             "resource": sub.get("resource", ""), "expiration": sub.get("expirationDateTime", ""),
                             "state": "unregistered", "lastRenewal": "", "createdAt": ""})
    for record in (r for r in records if r.tenant not in names):  # a tenant removed from the configuration
        rows.append({"id": record.id, "tenant": record.tenant, "mailbox": record.mailbox, "folder": record.folder,
                     "resource": record.resource, "expiration": record.expiration, "state": "tenant not configured",
                     "lastRenewal": record.renewed_at or "never", "createdAt": record.created_at})
    if as_json:
        print_json(rows)
    elif rows:
        columns = ["id", "mailbox", "folder", "state", "expiration", "lastRenewal"]
        table(rows, (["tenant"] if tenancy.several(settings) else []) + columns)
    else:
        print("no subscriptions (the renewer creates those listed under 'mailboxes' in GRAPHHOOK_CONFIG)")
    return 0
