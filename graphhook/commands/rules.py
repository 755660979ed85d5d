"""``graphhook rules test``: which rules would fire on a message, and why; nothing is done.

``rules test --mailbox M --id ID`` fetches the message and builds the same email record the
workers build (:class:`workers.records.messages.Fetcher`); ``rules test FILE`` reads a record (or an
event from ``graphhook:events``) and refuses anything else. For every rule it shows each test of
its ``when`` and whether it held (:mod:`workers.triggers.explain`), and the actions a match would run.
Exit status: 0 when a rule matches, 1 when none does, 2 for input that is not an email record.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from graphhook.core.errors import ConfigError
from graphhook.output import add_format_flags, print_json, table, wants_json

from . import tenancy


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``graphhook rules test``."""
    p = sub.add_parser("rules", help="try the configured rules on a message or an email record (nothing is done)")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    test = verbs.add_parser("test", help="which rules match a message (--mailbox M --id ID) or a record FILE, and why",
                            description="Give a message (--mailbox and --id: fetched and turned into the record the "
                                        "workers build) or a FILE holding an email record ('-' for stdin).")
    test.add_argument("record", nargs="?", help="an email record, or a recorded event from graphhook:events")
    test.add_argument("--mailbox", help="the message's mailbox (with --id)")
    test.add_argument("--id", help="the Graph message id (from graphhook mail search)")
    test.add_argument("--folder", help="the folder name the rules see (default: the message's folder)")
    tenancy.add_tenant_flag(test)  # the tenant's mailbox and token, and only the rules that apply to it
    add_format_flags(test)
    test.set_defaults(func=run_test)


def _read(path: str) -> dict[str, Any]:
    from workers.triggers.explain import problem

    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path!r}: {exc.strerror}") from exc
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path!r} is not JSON ({exc}); give an email record, or test the message itself: "
                          "graphhook rules test --mailbox ADDRESS --id MESSAGE_ID") from None
    record = document.get("email", document) if isinstance(document, dict) else document
    why = problem(record)
    if why:
        raise ConfigError(f"{path!r} is not an email record: {why}. Test the message itself with: "
                          "graphhook rules test --mailbox ADDRESS --id MESSAGE_ID")
    return record


def _fetch(settings: Any, mailbox: str, message_id: str, folder: str | None, *,
           tenant: str | None = None) -> dict[str, Any]:
    from urllib.parse import quote

    from workers.graph.mailbox import user_path
    from workers.records.messages import Fetcher, FetchOptions

    settings.require("REDIS_URL")
    graph = tenancy.context(settings, tenant).graph
    fetcher = Fetcher(graph, mailbox, FetchOptions(max_bytes=settings.attachment_max_bytes,
                                                   spool_bytes=settings.attachment_spool_bytes,
                                                   item_depth=settings.item_depth, fetch_mime=settings.fetch_mime))
    try:
        record = fetcher.record(message_id, mailbox=mailbox, folder=folder)
    finally:
        fetcher.close()
    if folder is None and record.get("folderId"):
        place = graph.get(f"{user_path(mailbox)}/mailFolders/{quote(record['folderId'], safe='')}",
                          params={"$select": "displayName"})
        record["folder"] = place.get("displayName")
    return record


def run_test(args: argparse.Namespace) -> int:
    """Print every rule, whether it matches and why, with the actions a match would run."""
    import yaml

    from graphhook.core.settings import Settings
    from workers.triggers.actions import describe
    from workers.triggers.config import validate_config
    from workers.triggers.engine import evaluate
    from workers.triggers.explain import explain
    from workers.triggers.tenants import view

    by_id = bool(args.mailbox or args.id)
    if by_id == bool(args.record) or (by_id and not (args.mailbox and args.id)):
        raise ConfigError("give a message (--mailbox ADDRESS --id MESSAGE_ID) or a record FILE, not both")
    settings = Settings.from_env()
    config = validate_config(settings.config_path)
    config = view(config, tenancy.chosen(settings, args.tenant))
    record = (_fetch(settings, args.mailbox.strip(), args.id, args.folder, tenant=args.tenant) if by_id
              else _read(args.record))
    specs = {str(r.get("name")): r.get("when") for r in (yaml.safe_load(open(config.path)) or {}).get("rules") or []
             if isinstance(r, dict)} if config.path else {}
    would_run = {r.name for r in evaluate(config, record)}
    rules = []
    for rule in config.rules:
        matches = rule.when(record)
        rules.append({"name": rule.name, "matches": matches, "runs": rule.name in would_run, "stop": rule.stop,
                      "dryRun": rule.dry_run, "actions": [describe(a) for a in rule.actions],
                      "why": list(explain(specs.get(rule.name), record, config.organisation))})
    sender = (record.get("from") or {}).get("address", "")
    summary = {"mailbox": record.get("mailbox"), "id": record.get("id"), "subject": record.get("subject"),
               "from": sender, "folder": record.get("folder")}
    if wants_json(args):
        print_json({"message": summary, "matched": [r["name"] for r in rules if r["runs"]], "rules": rules})
        return 0 if would_run else 1
    print(f"{record.get('subject', '')!r} from {sender}: {len(would_run)} of {len(config.rules)} rule(s) match "
          "(nothing was done)")
    for r in rules:
        flags = (" (dry-run)" if r["dryRun"] else "") + (" (stop)" if r["stop"] else "")
        state = "would run" if r["runs"] else "matches, but an earlier rule stops" if r["matches"] else "no match"
        print(f"\n{r['name']}{flags}: {state}")
        table([{"held": "yes" if w["held"] else "no", "test": "  " * w["depth"] + w["test"], "path": w["path"]}
               for w in r["why"]], ["held", "test", "path"])
        for action in r["actions"] if r["runs"] else []:
            print(f"    - {action}")
    return 0 if would_run else 1
