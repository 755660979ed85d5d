"""``graphhook rules test FILE``: which rules would fire on an email record, and what they would do."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rules", help="try the configured rules on an email record (nothing is done)")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    test = verbs.add_parser("test", help="evaluate the rules on a record (JSON file, '-' for stdin)")
    test.add_argument("record", help="an email record, or a recorded event from graphhook:events (has 'email')")
    test.set_defaults(func=run_test)


def run_test(args: argparse.Namespace) -> int:
    """Print each rule that matches, in order, with the actions it would run; exit 1 if none match."""
    from graphhook.core.settings import Settings
    from workers.triggers.actions import describe
    from workers.triggers.config import validate_config
    from workers.triggers.engine import evaluate

    settings = Settings.from_env()
    config = validate_config(settings.config_path)
    text = sys.stdin.read() if args.record == "-" else open(args.record, encoding="utf-8").read()
    record = json.loads(text)
    record = record.get("email", record)
    matched = evaluate(config, record)
    print(f"{record.get('subject', '')!r} from {(record.get('from') or {}).get('address', '')}: "
          f"{len(matched)} of {len(config.rules)} rule(s) match")
    for rule in matched:
        flags = " (dry-run)" if rule.dry_run else ""
        flags += " (stop)" if rule.stop else ""
        print(f"  {rule.name}{flags}")
        for action in rule.actions:
            print(f"    - {describe(action)}")
    return 0 if matched else 1
