"""``graphhook mail get|search|send|forward|move|delete|mark-read``: one-off mailbox actions for responders.

Every action calls the same functions the rule actions and the purge use
(:mod:`workers.response.mailops`, :mod:`workers.response.search`). Output is JSON on stdout
(for scripts); ``--table`` prints a readable table instead. Searches follow
every page; ``--max`` is the only cap.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Mapping

from graphhook.core.errors import ConfigError
from graphhook.output import pairs, print_json, table

from .criteria import add_criteria, query_from

SEARCH_COLUMNS = ("mailbox", "receivedDateTime", "from", "subject", "id")
WHOLE = {"id", "mailbox", "from"}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``graphhook mail`` and its actions."""
    p = sub.add_parser("mail", help="one-off mailbox actions (get, search, send, forward, move, delete, mark-read)")
    actions = p.add_subparsers(dest="mail_action", required=True, metavar="ACTION")

    def action(name: str, help_: str, *, message: bool = True) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=help_)
        a.add_argument("--mailbox", required=True, action="append" if name == "search" else "store",
                       help="mailbox address" + (" (repeat to search several)" if name == "search" else ""))
        if message:
            a.add_argument("--id", required=True, help="Graph message id")
        a.add_argument("--table", action="store_true", help="a readable table instead of JSON")
        a.set_defaults(func=run)
        return a

    a = action("get", "show one message")
    a.add_argument("--html", action="store_true", help="the body as HTML (default: text)")

    a = action("search", "find messages (every page is followed)", message=False)
    add_criteria(a, body_help="words in the body (Graph $search: at most 1,000 results per mailbox)")
    a.add_argument("--folder", help="only this folder (well-known name, name or path such as Inbox/Phish)")
    a.add_argument("--max", type=int, default=None, help="stop after N messages in all (default: all of them)")

    a = action("send", "send a new message from --mailbox", message=False)
    a.add_argument("--to", action="append", required=True, help="recipient (repeat for several)")
    a.add_argument("--subject", required=True)
    a.add_argument("--body", default="", help="the body text (or HTML with --html)")
    a.add_argument("--html", action="store_true", help="the body is HTML")
    a.add_argument("--attach", nargs="+", action="extend", default=[], metavar="FILE",
                   help="attach files (up to 150 MB each; large ones are uploaded in ranges)")

    a = action("forward", "forward a message with a comment")
    a.add_argument("--to", action="append", required=True, help="recipient (repeat for several)")
    a.add_argument("--comment", default="", help="text above the forwarded message")

    a = action("move", "move a message to a folder (created when missing)")
    a.add_argument("--folder", required=True, help="well-known name, name or path such as Inbox/Phish")

    a = action("delete", "delete a message: to Deleted Items, or --hard")
    a.add_argument("--hard", action="store_true", help="hard delete (to Recoverable Items, out of the user's sight)")

    a = action("mark-read", "mark a message read (or --unread)")
    a.add_argument("--unread", action="store_true", help="mark it unread instead")


def _address(value: Any) -> str:
    return str(((value or {}).get("emailAddress") or {}).get("address") or "")


def run(args: argparse.Namespace) -> int:
    """Run one mail action; print its JSON (or table); 0 on success."""
    from graphhook.core.settings import Settings
    from workers import runtime
    from workers.response import mailops, search

    action = args.mail_action
    query = None
    if action == "search":
        if args.max is not None and args.max < 1:
            raise ConfigError(f"--max must be at least 1, got {args.max!r}")
        query = query_from(args)
    from workers.graph.uploads import LocalFile, send_files

    files = [LocalFile.open(path) for path in args.attach] if action == "send" else []
    settings = Settings.from_env()
    settings.require("REDIS_URL")  # the token cache and the per-mailbox limiter are shared through Redis
    settings.require_graph()
    graph = runtime.build(settings).graph
    mailbox = args.mailbox

    if action == "get":
        message = search.get_message(graph, mailbox, args.id, body_type="html" if args.html else "text")
        if args.table:
            pairs({"mailbox": mailbox, **{k: message.get(k) for k in (
                "id", "internetMessageId", "receivedDateTime", "subject", "isRead", "hasAttachments")},
                "from": _address(message.get("from")),
                "to": ", ".join(_address(r) for r in message.get("toRecipients") or []),
                "body": (message.get("body") or {}).get("content", "")})
        else:
            print_json(message)
        return 0
    if action == "search":
        assert query is not None
        rows: list[dict[str, Any]] = []
        for box in [b for value in mailbox for b in value.split(",") if b.strip()]:
            left = None if args.max is None else args.max - len(rows)
            if left == 0:
                break
            found = [{"mailbox": box, **m} for m in search.iter_messages(graph, box.strip(), query,
                                                                          folder=args.folder, limit=left)]
            if query.body and len(found) >= search.SEARCH_CAP:
                print(f"graphhook: {box}: Graph's $search returns at most {search.SEARCH_CAP:,} messages; "
                      "narrow the search (--since, --folder) to see the rest", file=sys.stderr)
            rows += found
        if args.table:
            table([{**r, "from": _address(r.get("from"))} for r in rows], SEARCH_COLUMNS, cell=_cell)
            print(f"{len(rows)} message(s)")
        else:
            print_json(rows)
        return 0

    result: dict[str, Any] = {"mailbox": mailbox, "action": action}
    if action == "send":
        how = send_files(graph, mailbox, args.to, args.subject, args.body, files=files,
                         content_type="HTML" if args.html else "Text", progress=_Progress())
        result.update(to=args.to, subject=args.subject, attachments=[f.name for f in files], sentAs=how)
    elif action == "forward":
        mailops.forward(graph, mailbox, args.id, args.to, args.comment)
        result.update(id=args.id, to=args.to)
    elif action == "move":
        result.update(id=args.id, folder=args.folder, newId=mailops.move(graph, mailbox, args.id, args.folder))
    elif action == "delete":
        mode = "hard" if args.hard else "soft"
        new_id = mailops.delete(graph, mailbox, args.id, mode=mode)
        result.update(id=args.id, mode=mode, **({"newId": new_id} if new_id else {}))
    elif action == "mark-read":
        mailops.mark_read(graph, mailbox, args.id, read=not args.unread)
        result.update(id=args.id, isRead=not args.unread)
    if args.table:
        pairs({k: ", ".join(v) if isinstance(v, list) else v for k, v in result.items()})
    else:
        print_json(result)
    return 0


class _Progress:
    """Upload progress on stderr, about every 10 % of each file (stdout stays JSON)."""

    def __init__(self) -> None:
        self._shown: dict[str, int] = {}

    def __call__(self, name: str, done: int, size: int) -> None:
        tenth = 10 * done // max(size, 1)
        if self._shown.get(name) != tenth:
            self._shown[name] = tenth
            print(f"graphhook: {name}: {done / 1e6:.1f} of {size / 1e6:.1f} MB attached", file=sys.stderr, flush=True)


def _cell(row: Mapping[str, Any], column: str) -> str:
    text = str(row.get(column) or "")
    return text if column in WHOLE else text[:60]  # ids and addresses are needed whole to act on them
