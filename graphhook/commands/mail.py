"""``graphhook mail …``: one-off mailbox actions for responders.

Triage (``get``, ``attachments``, ``folders``: :mod:`graphhook.commands.mail_triage`), scope
(``search`` across mailboxes) and act (``send``, ``reply``, ``forward``, ``move``, ``delete``,
``mark-read``). Every action calls the same functions the rule actions and the purge use
(:mod:`workers.response.mailops`, :mod:`workers.response.search`). Output: a table on a terminal,
JSON with ``--json`` (and, as before, when stdout is not a terminal). Searches follow every page;
``--max`` is the only cap; a mailbox that fails is reported and the others still answer.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import sys
from typing import Any, Mapping

from graphhook.core.errors import ConfigError, GraphError
from graphhook.output import add_format_flags, pairs, print_json, table, wants_json

from . import mail_triage, tenancy
from .criteria import add_criteria, add_mailbox_sources, listed_mailboxes, query_from, source_count, split_addresses

SEARCH_COLUMNS = ("mailbox", "receivedDateTime", "from", "subject", "id")
WHOLE = {"id", "mailbox", "from"}
SEARCH_CONCURRENCY = 8  # mailboxes searched at once; the Graph client keeps Graph's 4 requests per mailbox


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``graphhook mail`` and its actions."""
    p = sub.add_parser("mail", help="one-off mailbox actions (get, attachments, folders, search, send, reply, "
                                    "forward, move, delete, mark-read)")
    actions = p.add_subparsers(dest="mail_action", required=True, metavar="ACTION")

    def action(name: str, help_: str, *, message: bool = True, mailbox: bool = True) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=help_)
        if mailbox:
            a.add_argument("--mailbox", required=True, help="mailbox address")
        if message:
            a.add_argument("--id", required=True, help="Graph message id (from mail search)")
        tenancy.add_tenant_flag(a)
        add_format_flags(a, piped_json=True)
        a.set_defaults(func=run)
        return a

    a = action("get", "show one message: headers, links (text vs real target), attachments, body")
    a.add_argument("--html", action="store_true", help="the body as HTML (default: text)")
    a.add_argument("--save-eml", dest="save_eml", metavar="FILE",
                   help="also write the raw message (RFC 5322, Graph's /$value) to FILE ('-': stdout)")

    a = action("attachments", "list every attachment (nested ones too): name, type, size, SHA-256")
    a.add_argument("--save", metavar="DIR", help="save the attachments' files into DIR (created 0700)")

    action("folders", "list the mailbox's folders with their paths and counts", message=False)

    a = action("search", "find messages in one, several or every mailbox (every page is followed)",
               message=False, mailbox=False)
    add_mailbox_sources(a.add_argument_group("where (exactly one)"))
    add_criteria(a.add_argument_group("what (every given criterion must match)"),
                 body_help="words in the body (Graph $search: at most 1,000 results per mailbox)")
    a.add_argument("--folder", help="only this folder (well-known name, name or path such as Inbox/Phish)")
    a.add_argument("--max", type=int, default=None, help="stop after N messages in all (default: all of them)")
    a.add_argument("--concurrency", type=int, default=SEARCH_CONCURRENCY, metavar="N",
                   help=f"mailboxes searched at once (default {SEARCH_CONCURRENCY})")

    a = action("send", "send a new message from --mailbox", message=False)
    a.add_argument("--to", action="append", required=True, help="recipient (repeat, or comma-separate)")
    a.add_argument("--cc", action="append", default=[], help="Cc recipient (repeat, or comma-separate)")
    a.add_argument("--bcc", action="append", default=[], help="Bcc recipient (repeat, or comma-separate)")
    a.add_argument("--subject", required=True)
    a.add_argument("--body", default="", help="the body text (or HTML with --html)")
    a.add_argument("--html", action="store_true", help="the body is HTML")
    a.add_argument("--attach", nargs="+", action="extend", default=[], metavar="FILE",
                   help="attach files (up to 150 MB each; large ones are uploaded in ranges)")

    a = action("reply", "reply to the sender (or --all) with a comment above the quoted message")
    a.add_argument("--comment", required=True, help="the reply's text")
    a.add_argument("--all", dest="reply_all", action="store_true", help="reply to every recipient (replyAll)")

    a = action("forward", "forward a message with a comment")
    a.add_argument("--to", action="append", required=True, help="recipient (repeat, or comma-separate)")
    a.add_argument("--comment", default="", help="text above the forwarded message")

    a = action("move", "move a message to a folder (created when missing)")
    a.add_argument("--folder", required=True, help="well-known name, name or path such as Inbox/Phish")

    a = action("delete", "delete a message: to Deleted Items, or --hard")
    a.add_argument("--hard", action="store_true", help="hard delete (to Recoverable Items, out of the user's sight)")

    a = action("mark-read", "mark a message read (or --unread)")
    a.add_argument("--unread", action="store_true", help="mark it unread instead")


def _address(value: Any) -> str:
    return str(((value or {}).get("emailAddress") or {}).get("address") or "")


def _one_mailbox(value: str) -> str:
    boxes = split_addresses([value])
    if len(boxes) != 1:
        raise ConfigError(f"--mailbox takes one address here, got {value!r} (mail search takes several)")
    return boxes[0]


def run(args: argparse.Namespace) -> int:
    """Run one mail action; print its table (or JSON); 0 on success, 1 when a mailbox or the action failed."""
    from graphhook.core.settings import Settings

    action = args.mail_action
    query = None
    if action == "search":
        if args.max is not None and args.max < 1:
            raise ConfigError(f"--max must be at least 1, got {args.max!r}")
        if args.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, got {args.concurrency!r}")
        if source_count(args) != 1:
            raise ConfigError("say where to search with exactly one of --mailbox ADDRESS, --mailboxes-file FILE "
                              "or --all-mailboxes")
        query = query_from(args)
    else:
        args.mailbox = _one_mailbox(args.mailbox)
    from workers.graph.uploads import LocalFile

    files = [LocalFile.open(path) for path in args.attach] if action == "send" else []
    settings = Settings.from_env()
    settings.require("REDIS_URL")  # the token cache and the per-mailbox limiter are shared through Redis
    graph = tenancy.context(settings, args.tenant).graph  # the tenant's token: no other tenant's mailbox

    if action in mail_triage.ACTIONS:
        return mail_triage.ACTIONS[action](graph, settings, args)
    if action == "search":
        return _search(graph, args, query)
    return _act(graph, args, files)


def _search(graph: Any, args: argparse.Namespace, query: Any) -> int:
    from workers.response import search
    from workers.response.progress import ProgressBar
    from workers.response.purge_model import normalise_mailboxes

    boxes = (list(search.iter_mailboxes(graph)) if args.all_mailboxes
             else normalise_mailboxes(listed_mailboxes(args)))
    if not boxes:
        raise ConfigError("no mailboxes to search")
    bar = ProgressBar(sys.stderr)
    progress = {"done": 0, "total": len(boxes), "found": 0}
    found: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, str] = {}

    def one(box: str) -> list[dict[str, Any]]:
        return [{"mailbox": box, **m} for m in search.iter_messages(graph, box, query, folder=args.folder,
                                                                     limit=args.max)]

    with cf.ThreadPoolExecutor(max_workers=min(args.concurrency, len(boxes)), thread_name_prefix="search") as pool:
        futures = {pool.submit(one, box): box for box in boxes}
        try:
            for future in cf.as_completed(futures):
                box = futures[future]
                try:
                    found[box] = future.result()
                except GraphError as exc:
                    failed[box] = f"{exc.status} {exc.code}: {exc.graph_message}".strip()
                progress["done"] += 1
                progress["found"] += len(found.get(box, []))
                bar(dict(progress))
        except KeyboardInterrupt:
            for future in futures:  # Ctrl-C: the searches in flight finish, the rest are not started
                future.cancel()
            raise
        finally:
            bar.close()
    rows = [row for box in boxes for row in found.get(box, [])][:args.max]
    for box in boxes:
        if box in failed:
            print(f"graphhook: {box}: not searched: {failed[box]}", file=sys.stderr)
        elif query.uses_search and len(found[box]) >= search.SEARCH_CAP:
            print(f"graphhook: {box}: Graph's $search returns at most {search.SEARCH_CAP:,} messages; "
                  "narrow the search (--since, --folder) to see the rest", file=sys.stderr)
    if wants_json(args):
        print_json(rows)
    else:
        table([{**r, "from": _address(r.get("from"))} for r in rows], SEARCH_COLUMNS, cell=_cell)
        searched = len(boxes) - len(failed)
        print(f"{len(rows)} message(s) in {searched} mailbox(es)"
              + (f"; {len(failed)} mailbox(es) could not be searched (see above)" if failed else ""))
    return 1 if failed else 0


def _act(graph: Any, args: argparse.Namespace, files: list[Any]) -> int:
    from workers.graph.uploads import send_files
    from workers.response import mailops

    action, mailbox = args.mail_action, args.mailbox
    result: dict[str, Any] = {"mailbox": mailbox, "action": action}
    if action == "send":
        to, cc, bcc = split_addresses(args.to), split_addresses(args.cc), split_addresses(args.bcc)
        how = send_files(graph, mailbox, to, args.subject, args.body, files=files, cc=cc, bcc=bcc,
                         content_type="HTML" if args.html else "Text", progress=_Progress())
        result.update(to=to, cc=cc, bcc=bcc, subject=args.subject, attachments=[f.name for f in files], sentAs=how)
    elif action == "reply":
        mailops.reply(graph, mailbox, args.id, args.comment, reply_all=args.reply_all)
        result.update(id=args.id, replyAll=args.reply_all)
    elif action == "forward":
        to = split_addresses(args.to)
        mailops.forward(graph, mailbox, args.id, to, args.comment)
        result.update(id=args.id, to=to)
    elif action == "move":
        result.update(id=args.id, folder=args.folder, newId=mailops.move(graph, mailbox, args.id, args.folder))
    elif action == "delete":
        mode = "hard" if args.hard else "soft"
        new_id = mailops.delete(graph, mailbox, args.id, mode=mode)
        result.update(id=args.id, mode=mode, **({"newId": new_id} if new_id else {}))
    elif action == "mark-read":
        mailops.mark_read(graph, mailbox, args.id, read=not args.unread)
        result.update(id=args.id, isRead=not args.unread)
    if wants_json(args):
        print_json(result)
    else:
        pairs({k: ", ".join(v) if isinstance(v, list) else v for k, v in result.items()})
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
