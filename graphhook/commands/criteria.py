"""What ``graphhook mail search`` and ``graphhook purge`` share: the message criteria and where to look.

One set of flags, one query (:class:`workers.response.search.MessageQuery`), one way of naming mailboxes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from graphhook.core.errors import ConfigError


def add_criteria(group: Any, *, body_help: str) -> None:
    """Add ``--message-id``, ``--from``, ``--to``, ``--subject``, ``--subject-contains``, ``--body``, ``--since``,
    ``--until``."""
    group.add_argument("--message-id", dest="message_id", help="the Internet Message-ID, e.g. '<abc@evil.example>'")
    group.add_argument("--from", dest="sender", metavar="ADDRESS_OR_DOMAIN",
                       help="sender: a full address (ceo@fabrikam.com) or just a domain (fabrikam.com, its "
                            "subdomains too; Graph $search: at most 1,000 results per mailbox)")
    group.add_argument("--to", dest="recipient", metavar="ADDRESS",
                       help="a recipient in To, Cc or Bcc (Graph $search: at most 1,000 results per mailbox)")
    group.add_argument("--subject", help="the whole subject (case-insensitive)")
    group.add_argument("--subject-contains", dest="subject_contains", help="text in the subject")
    group.add_argument("--body", help=body_help)
    group.add_argument("--since", help="received at or after: 24h, 7d or an ISO time")
    group.add_argument("--until", help="received before: 24h, 7d or an ISO time")


def given(args: argparse.Namespace) -> bool:
    """True if any criterion was given."""
    return any((args.message_id, args.sender, args.recipient, args.subject, args.subject_contains, args.body,
                args.since, args.until))


def query_from(args: argparse.Namespace):
    """The :class:`workers.response.search.MessageQuery` the flags describe."""
    from workers.response.search import MessageQuery, parse_when

    return MessageQuery(
        internet_message_id=args.message_id, sender=args.sender, subject=args.subject,
        subject_contains=args.subject_contains, body=args.body, recipient=args.recipient,
        since=parse_when(args.since) if args.since else None,
        until=parse_when(args.until) if args.until else None)


def add_mailbox_sources(group: Any) -> None:
    """Add ``--mailbox`` (repeat or comma-separate), ``--mailboxes-file`` and ``--all-mailboxes``."""
    group.add_argument("--mailbox", action="append", default=[], metavar="ADDRESS",
                       help="a mailbox (repeat, or comma-separate: 'a@x.com, b@x.com')")
    group.add_argument("--mailboxes-file", dest="mailboxes_file", metavar="FILE",
                       help="a file with one mailbox per line ('#' starts a comment; '-' reads stdin)")
    group.add_argument("--all-mailboxes", dest="all_mailboxes", action="store_true",
                       help="every mailbox in the tenant (GET /users, every page; needs User.Read.All)")


def source_count(args: argparse.Namespace) -> int:
    """How many of --mailbox, --mailboxes-file and --all-mailboxes were given."""
    return sum(bool(s) for s in (args.mailbox, args.mailboxes_file, args.all_mailboxes))


def split_addresses(values: list[str]) -> list[str]:
    """``['a@x.com, b@x.com', 'c@x.com']`` → three addresses: split on commas, spaces trimmed, blanks dropped."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def listed_mailboxes(args: argparse.Namespace) -> list[str]:
    """The mailboxes named by --mailbox and --mailboxes-file (not --all-mailboxes: that needs Graph)."""
    boxes = split_addresses(args.mailbox)
    if args.mailboxes_file:
        try:
            text = sys.stdin.read() if args.mailboxes_file == "-" else Path(args.mailboxes_file).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read mailboxes file {args.mailboxes_file!r}: {exc.strerror}") from exc
        boxes += text.splitlines()
    return boxes
