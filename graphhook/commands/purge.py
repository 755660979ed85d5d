"""``graphhook purge``: find a message's copies across mailboxes and remove them (soft or hard), resumably.

The JSON report goes to stdout; the purge id, the progress bar and the
summary table go to stderr. Exit status: 0 when every mailbox was settled,
1 on partial failure, 130 when interrupted (resume with ``--resume ID``),
2 for a refused purge (bad options, more than 50,000 mailboxes).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from graphhook.core.errors import ConfigError
from graphhook.output import table

from .criteria import add_criteria, given, query_from


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``graphhook purge``."""
    p = sub.add_parser("purge", help="search-and-purge a message across mailboxes",
                       description="Find every copy of a message (by internetMessageId, sender, subject, received "
                                   "window) across mailboxes and remove it: at most 10 per mailbox at a time, at most "
                                   "50,000 mailboxes per purge. State is kept in Redis; an interrupted purge is "
                                   "continued with --resume ID.")
    what = p.add_argument_group("what to remove (every given criterion must match)")
    add_criteria(what, body_help="words in the body (Graph $search: at most 1,000 matches per mailbox and round)")
    where = p.add_argument_group("where")
    where.add_argument("--mailbox", action="append", default=[], metavar="ADDRESS",
                       help="a mailbox (repeat, or comma-separate)")
    where.add_argument("--mailboxes-file", dest="mailboxes_file", metavar="FILE",
                       help="a file with one mailbox per line ('#' starts a comment; '-' reads stdin)")
    where.add_argument("--all-mailboxes", dest="all_mailboxes", action="store_true",
                       help="every mailbox in the tenant (GET /users; needs User.Read.All)")
    how = p.add_argument_group("how")
    how.add_argument("--hard", action="store_true",
                     help="hard delete (to Recoverable Items, out of the user's sight) "
                          "instead of moving to Deleted Items")
    how.add_argument("--dry-run", dest="dry_run", action="store_true", help="remove nothing; report what would go")
    how.add_argument("--resume", metavar="ID", help="continue an interrupted purge (criteria and mailboxes are saved)")
    how.add_argument("--concurrency", type=int, default=None, metavar="N",
                     help="mailboxes worked at once (default 8; Graph's 4 requests per mailbox are always kept)")
    how.add_argument("--quiet", action="store_true", help="no progress bar and no summary table")
    p.set_defaults(func=run)


def _mailboxes(args: argparse.Namespace) -> list[str]:
    boxes = [part for value in args.mailbox for part in value.split(",")]
    if args.mailboxes_file:
        try:
            text = sys.stdin.read() if args.mailboxes_file == "-" else Path(args.mailboxes_file).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read mailboxes file {args.mailboxes_file!r}: {exc.strerror}") from exc
        boxes += text.splitlines()
    return boxes


def run(args: argparse.Namespace) -> int:
    """Start (or resume) a purge; print the JSON report; 0 all settled, 1 partial failure, 130 interrupted."""
    from graphhook.core.settings import Settings
    from workers import runtime
    from workers.response.progress import ProgressBar
    from workers.response.purge import DEFAULT_CONCURRENCY, MAX_MAILBOXES, Purge, PurgeSpec, check_mailbox_count
    from workers.response.search import iter_mailboxes

    sources = sum(bool(s) for s in (args.mailbox, args.mailboxes_file, args.all_mailboxes))
    concurrency = args.concurrency if args.concurrency is not None else DEFAULT_CONCURRENCY
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {concurrency!r}")
    if args.resume:
        if given(args) or sources or args.hard or args.dry_run:
            raise ConfigError("--resume continues a saved purge: give no criteria, mailboxes, --hard or --dry-run")
    else:
        if sources != 1:
            raise ConfigError("say where to purge with exactly one of --mailbox, --mailboxes-file or --all-mailboxes")
        spec = PurgeSpec(query_from(args), mode="hard" if args.hard else "soft", dry_run=args.dry_run)
        boxes = _mailboxes(args)
        if boxes:  # refused here, before Redis or Graph is touched
            from workers.response.purge import normalise_mailboxes

            check_mailbox_count(len(normalise_mailboxes(boxes)))

    settings = Settings.from_env()
    settings.require("REDIS_URL")
    settings.require_graph()
    ctx = runtime.build(settings)
    if args.resume:
        purge = Purge.load(ctx.graph, ctx.redis, args.resume)
    else:
        if args.all_mailboxes:
            boxes = list(iter_mailboxes(ctx.graph, limit=MAX_MAILBOXES + 1))
        purge = Purge.create(ctx.graph, ctx.redis, spec, boxes)
    what = "dry run" if purge.spec.dry_run else f"{purge.spec.mode} delete"
    print(f"purge {purge.id}: {what} across {len(purge.mailboxes):,} mailboxes "
          f"(if interrupted: graphhook purge --resume {purge.id})", file=sys.stderr)

    bar = ProgressBar(sys.stderr, enabled=False if args.quiet else None)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a stop request finishes the removals in flight
    try:
        result = purge.run(concurrency=concurrency, on_progress=bar)
    finally:
        signal.signal(signal.SIGTERM, previous)
        bar.close()
    print(json.dumps(result.to_dict(), indent=2))
    if not args.quiet:
        _table(result.to_dict(), sys.stderr)
    if result.interrupted:
        print(f"purge {purge.id} interrupted; continue it with: graphhook purge --resume {purge.id}", file=sys.stderr)
        return 130
    return 0 if result.ok else 1


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt()


def _table(report: dict[str, Any], stream: Any) -> None:
    """Mailboxes where something was found or failed, then the totals."""
    columns = ["mailbox", "status", "found", "removed", "failed", "rounds", "why"]
    rows = [{**r, "why": "; ".join(r["why"])} for r in report["mailboxes"]
            if r["found"] or r["failed"] or r["why"] or r["status"] == "pending"]
    totals = report["totals"]
    rows.append({"mailbox": f"TOTAL ({totals['mailboxes']:,} mailboxes)", "status": "", "found": totals["found"],
                 "removed": totals["removed"], "failed": totals["failed"], "rounds": "", "why": ""})
    table(rows, columns, stream=stream)  # the last column (why) is printed whole: it is what the responder acts on
    clean = totals.get("mailboxes_clean", 0)
    if clean:
        print(f"{clean:,} mailbox(es) had no matching message.", file=stream)
