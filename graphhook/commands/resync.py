"""``graphhook resync --mailbox ADDRESS [--folder NAME] [--since 24h] [--tenant NAME]``: delta resync of one mailbox
folder, in the tenant named (required when several are configured)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re

from graphhook.core.errors import ConfigError
from graphhook.output import add_format_flags, pairs, wants_json

from . import tenancy

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> dt.timedelta:
    """``90s``, ``30m``, ``24h``, ``7d``, ``2w`` → timedelta; ConfigError quoting the bad value."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not match:
        raise ConfigError(f"duration must look like 30m, 24h or 7d, got {text!r}")
    return dt.timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resync", help="delta resync of one mailbox folder")
    p.add_argument("--mailbox", required=True, help="mailbox address")
    p.add_argument("--folder", default="inbox", help="folder (default inbox)")
    p.add_argument("--since", type=parse_duration, default=None,
                   help="backfill window for a new baseline, e.g. 24h (default: changes since the last sync)")
    tenancy.add_tenant_flag(p)
    add_format_flags(p, piped_json=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from graphhook.core.settings import Settings
    from workers.subscriptions import operations, registry
    from workers.subscriptions.resync import resync_folder

    settings = Settings.from_env()
    settings.require("REDIS_URL")
    ctx = tenancy.context(settings, args.tenant)  # the tenant's token: its own mailboxes only
    args.mailbox, args.folder = args.mailbox.strip(), args.folder.strip()
    user_id = operations.user_id_of(ctx.graph, args.mailbox)
    sub_id = next((r.id for r in registry.all_records(ctx.redis)
                   if r.tenant == ctx.tenant and r.key == (args.mailbox.lower(), args.folder.lower())), "")
    result = resync_folder(ctx, args.mailbox, args.folder, user_id, subscription_id=sub_id, since=args.since)
    if wants_json(args):
        print(json.dumps({**result.__dict__, "tenant": ctx.tenant}))  # one line, as before
    else:
        pairs({"tenant": ctx.tenant, "mailbox": args.mailbox, "folder": args.folder, **result.__dict__})
    return 0
