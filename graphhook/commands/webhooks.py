"""``graphhook webhooks failed|replay|stats``: webhook deliveries that gave up, and replaying them.

A table on a terminal (and when piped, as before); ``--json`` prints the same fields as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from graphhook.output import add_format_flags, print_json, table, wants_json


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``graphhook webhooks`` and its verbs."""
    p = sub.add_parser("webhooks", help="list and replay failed webhook deliveries")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    failed = verbs.add_parser("failed", help="list deliveries that gave up (oldest first)")
    failed.set_defaults(func=run_failed)
    replay = verbs.add_parser("replay", help="queue failed deliveries again")
    replay.add_argument("--webhook", help="only this webhook's failures")
    replay.set_defaults(func=run_replay)
    stats = verbs.add_parser("stats", help="delivered / failed attempts / given up, per webhook")
    stats.set_defaults(func=run_stats)
    for verb in (failed, replay, stats):
        add_format_flags(verb)


def _redis():
    from graphhook.core.redisconn import connect
    from graphhook.core.settings import Settings

    settings = Settings.from_env()
    settings.require("REDIS_URL")
    return settings, connect(settings)


def _plural(count: int) -> str:
    return f"{count} deliver{'y' if count == 1 else 'ies'}"


def run_failed(args: argparse.Namespace) -> int:
    """Deliveries that gave up: when, webhook, event id, mailbox, subject, error."""
    from workers.triggers.webhooks import failed

    _, r = _redis()
    rows: list[dict[str, Any]] = []
    for item in failed(r):
        email = item["event"].get("email") or {}
        rows.append({"failedAt": dt.datetime.fromtimestamp(item["failedAt"], dt.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"), "webhook": item["webhook"], "event": item["event"]["id"],
            "mailbox": email.get("mailbox") or "", "subject": email.get("subject") or "", "error": item["error"]})
    if wants_json(args):
        print_json(rows)
        return 0
    if rows:
        table(rows, ["failedAt", "webhook", "event", "mailbox", "subject", "error"])
    count = len(rows)
    print(f"{count} failed deliver{'y' if count == 1 else 'ies'}" + ("" if rows else " (nothing to replay)"))
    return 0


def run_replay(args: argparse.Namespace) -> int:
    """Queue the failed deliveries (of one webhook) again."""
    from workers.triggers.config import load_config
    from workers.triggers.webhooks import replay_failed

    settings, r = _redis()
    count = replay_failed(r, settings.queue_name, load_config(settings.config_path), webhook=args.webhook)
    if wants_json(args):
        print_json({"queued": count, "webhook": args.webhook})
    else:
        print(f"queued {_plural(count)} again")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """Per webhook: delivered, failed attempts, given up (dead); says so when nothing was sent yet."""
    from workers.triggers.webhooks import STATS

    _, r = _redis()
    counts: dict[str, dict[str, Any]] = {}
    for field, value in r.hgetall(STATS).items():
        name, _, what = field.decode().rpartition(":")
        row = counts.setdefault(name, {"webhook": name, "delivered": 0, "failed_attempts": 0, "dead": 0})
        row[what] = int(value)
    rows = [counts[name] for name in sorted(counts)]
    if wants_json(args):
        print_json(rows)
    elif rows:
        table(rows, ["webhook", "delivered", "failed_attempts", "dead"])
    else:
        print("no webhook deliveries yet (stats count from the first delivery attempt)")
    return 0
