"""``graphhook purge``: find a message's copies across mailboxes and remove them (soft or hard), resumably.

Output follows the command line's convention: a table on a terminal (the mailboxes, and for a dry
run every message that would go), ``--json`` for the JSON report on stdout. When stdout is not a
terminal and neither flag is given, the JSON report goes to stdout and the summary table to stderr,
as before. The purge id and the progress bar (on a terminal) always go to stderr.

A purge that removes mail asks for confirmation on a terminal; without one it needs ``--yes``.
A purge acts in one tenant (``--tenant``, required when several are configured): with ``tenants:``
declared, every listed mailbox must be in that tenant's directory, or nothing is searched or removed.
Exit status: 0 when every mailbox was settled, 1 on partial failure, 130 when interrupted (resume
with ``--resume ID``), 2 for a refused purge (bad options, no confirmation, more than 50,000 mailboxes,
mailboxes outside the tenant).
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from graphhook.core.errors import ConfigError
from graphhook.output import add_format_flags, print_json, table, wants_json

from . import tenancy
from .criteria import add_criteria, add_mailbox_sources, given, listed_mailboxes, query_from, source_count


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``graphhook purge``."""
    p = sub.add_parser("purge", help="search-and-purge a message across mailboxes",
                       description="Find every copy of a message (by internetMessageId, sender or sender domain, "
                                   "recipient, subject, received window) across mailboxes and remove it: at most 10 "
                                   "per mailbox at a time, at most 50,000 mailboxes per purge. State is kept in "
                                   "Redis; an interrupted purge is continued with --resume ID.")
    what = p.add_argument_group("what to remove (every given criterion must match)")
    add_criteria(what, body_help="words in the body (Graph $search: at most 1,000 matches per mailbox and round)")
    add_mailbox_sources(p.add_argument_group("where (exactly one)"))
    how = p.add_argument_group("how")
    how.add_argument("--hard", action="store_true",
                     help="hard delete (to Recoverable Items, out of the user's sight) "
                          "instead of moving to Deleted Items")
    how.add_argument("--dry-run", dest="dry_run", action="store_true",
                     help="remove nothing; list every message that would go")
    how.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts; check with --dry-run)")
    how.add_argument("--resume", metavar="ID", help="continue an interrupted purge (criteria and mailboxes are saved)")
    how.add_argument("--concurrency", type=int, default=None, metavar="N",
                     help="mailboxes worked at once (default 8; Graph's 4 requests per mailbox are always kept)")
    how.add_argument("--quiet", action="store_true", help="no progress bar and no summary table on stderr")
    tenancy.add_tenant_flag(how)  # one tenant per purge: its token, its directory, its saved state
    add_format_flags(p, piped_json=True)
    p.set_defaults(func=run)


def _can_ask() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _confirm(spec: Any, mailboxes: int) -> None:
    """Ask on the terminal; ConfigError unless the answer is yes."""
    how = "hard-delete (to Recoverable Items)" if spec.mode == "hard" else "move to Deleted Items"
    criteria = ", ".join(f"{k}={v!r}" for k, v in spec.query.to_dict().items() if v)
    sys.stderr.write(f"This will {how} every message matching {criteria} in {mailboxes:,} mailbox(es).\n"
                     "Check first with --dry-run. Continue? Type 'yes': ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise ConfigError("purge not started: not confirmed")


def run(args: argparse.Namespace) -> int:
    """Start (or resume) a purge; print the report; 0 all settled, 1 partial failure, 130 interrupted."""
    from graphhook.core.settings import Settings
    from workers.response.progress import ProgressBar
    from workers.response.purge import (
        DEFAULT_CONCURRENCY,
        MAX_MAILBOXES,
        Purge,
        PurgeSpec,
        check_mailbox_count,
        normalise_mailboxes,
    )
    from workers.response.search import iter_mailboxes

    sources = source_count(args)
    concurrency = args.concurrency if args.concurrency is not None else DEFAULT_CONCURRENCY
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {concurrency!r}")
    ask = False
    if args.resume:
        if given(args) or sources or args.hard or args.dry_run:
            raise ConfigError("--resume continues a saved purge: give no criteria, mailboxes, --hard or --dry-run")
    else:
        if sources != 1:
            raise ConfigError("say where to purge with exactly one of --mailbox ADDRESS, --mailboxes-file FILE "
                              "or --all-mailboxes")
        spec = PurgeSpec(query_from(args), mode="hard" if args.hard else "soft", dry_run=args.dry_run)
        boxes = listed_mailboxes(args)
        if boxes:  # refused here, before Redis or Graph is touched
            check_mailbox_count(len(normalise_mailboxes(boxes)))
        if not args.dry_run and not args.yes:
            if not _can_ask():
                raise ConfigError("refusing to purge without confirmation and there is no terminal to ask on: "
                                  "add --yes (after checking what would go with --dry-run)")
            ask = True

    settings = Settings.from_env()
    settings.require("REDIS_URL")
    ctx = tenancy.context(settings, args.tenant)  # the tenant's token: it reaches that tenant's directory only
    if args.resume:
        purge = Purge.load(ctx.graph, ctx.redis, args.resume, tenant=ctx.tenant)
    else:
        if args.all_mailboxes:
            boxes = list(iter_mailboxes(ctx.graph, limit=MAX_MAILBOXES + 1))
            check_mailbox_count(len(boxes))
        elif tenancy.declared(settings):
            _refuse_outside(ctx, normalise_mailboxes(boxes), concurrency)
        if ask:
            _confirm(spec, len(normalise_mailboxes(boxes)))
        purge = Purge.create(ctx.graph, ctx.redis, spec, boxes, tenant=ctx.tenant)
    what = "dry run" if purge.spec.dry_run else f"{purge.spec.mode} delete"
    print(f"purge {purge.id}: {what} across {len(purge.mailboxes):,} mailboxes of tenant {ctx.tenant} "
          f"(if interrupted: {_resume(purge.id, ctx.tenant)})", file=sys.stderr)

    bar = ProgressBar(sys.stderr, enabled=False if args.quiet else None)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a stop request finishes the removals in flight
    try:
        result = purge.run(concurrency=concurrency, on_progress=bar)
    finally:
        signal.signal(signal.SIGTERM, previous)
        bar.close()
    report = {**result.to_dict(), "tenant": ctx.tenant}
    if wants_json(args):
        print_json(report)
        if not args.json and not args.quiet:  # piped without a flag: the summary on stderr, as before
            _table(report, sys.stderr)
    else:
        _table(report, sys.stdout)
    if result.interrupted:
        print(f"purge {purge.id} interrupted; continue it with: {_resume(purge.id, ctx.tenant)}", file=sys.stderr)
        return 130
    return 0 if result.ok else 1


def _resume(purge_id: str, tenant: str) -> str:
    """The command that continues a purge (its state is the tenant's)."""
    return f"graphhook purge --resume {purge_id}{tenancy.flag(tenant)}"


def _refuse_outside(ctx: Any, boxes: list[str], concurrency: int) -> None:
    """Refuse, before any search or removal, a purge naming mailboxes outside the tenant's directory."""
    from workers.response.search import outside_directory

    outside = outside_directory(ctx.graph, boxes, concurrency=concurrency)
    if outside:
        shown = "\n".join(f"  {address}: {why}" for address, why in list(outside.items())[:20])
        more = f"\n  … and {len(outside) - 20:,} more" if len(outside) > 20 else ""
        raise ConfigError(f"purge refused: {len(outside):,} of the mailboxes are not in tenant {ctx.tenant!r} "
                          f"(a purge acts in one tenant; purge another tenant's with its own --tenant):\n"
                          f"{shown}{more}")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt()


def _table(report: dict[str, Any], stream: Any) -> None:
    """A dry run's messages; mailboxes where something was found or failed; then the totals."""
    if report.get("messages"):
        table(report["messages"], ["mailbox", "receivedDateTime", "subject", "id"], stream=stream)
        print(f"{len(report['messages']):,} message(s) would be removed.\n", file=stream)
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
