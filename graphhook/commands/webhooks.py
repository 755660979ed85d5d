"""``graphhook webhooks failed|replay|stats``: webhook deliveries that gave up, and replaying them."""

from __future__ import annotations

import argparse
import datetime as dt


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("webhooks", help="list and replay failed webhook deliveries")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("failed", help="list deliveries that gave up (oldest first)").set_defaults(func=run_failed)
    replay = verbs.add_parser("replay", help="queue failed deliveries again")
    replay.add_argument("--webhook", help="only this webhook's failures")
    replay.set_defaults(func=run_replay)
    verbs.add_parser("stats", help="delivered / failed attempts / given up, per webhook").set_defaults(func=run_stats)


def _redis():
    from graphhook.core.redisconn import connect
    from graphhook.core.settings import Settings

    settings = Settings.from_env()
    settings.require("REDIS_URL")
    return settings, connect(settings)


def run_failed(args: argparse.Namespace) -> int:
    from workers.triggers.webhooks import failed

    _, r = _redis()
    items = failed(r)
    for item in items:
        when = dt.datetime.fromtimestamp(item["failedAt"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        email = item["event"].get("email") or {}
        print(f"{when}  {item['webhook']:<16} {item['event']['id']}  {email.get('mailbox', '')}  "
              f"{email.get('subject', '')!r}  {item['error']}")
    print(f"{len(items)} failed deliver{'y' if len(items) == 1 else 'ies'}")
    return 0


def run_replay(args: argparse.Namespace) -> int:
    from workers.triggers.config import load_config
    from workers.triggers.webhooks import replay_failed

    settings, r = _redis()
    count = replay_failed(r, settings.trigger_queue, load_config(settings.config_path), webhook=args.webhook)
    print(f"queued {count} deliver{'y' if count == 1 else 'ies'} again")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from workers.triggers.webhooks import STATS

    _, r = _redis()
    for field, value in sorted(r.hgetall(STATS).items()):
        print(f"{field.decode():<40} {int(value)}")
    return 0
