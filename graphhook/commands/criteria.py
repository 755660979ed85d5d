"""The message criteria shared by ``graphhook mail search`` and ``graphhook purge``: one set of flags, one query."""

from __future__ import annotations

import argparse
from typing import Any


def add_criteria(group: Any, *, body_help: str) -> None:
    """Add ``--message-id``, ``--from``, ``--subject``, ``--subject-contains``, ``--body``, ``--since``, ``--until``."""
    group.add_argument("--message-id", dest="message_id", help="the Internet Message-ID, e.g. '<abc@evil.example>'")
    group.add_argument("--from", dest="sender", help="sender address")
    group.add_argument("--subject", help="the whole subject (case-insensitive)")
    group.add_argument("--subject-contains", dest="subject_contains", help="text in the subject")
    group.add_argument("--body", help=body_help)
    group.add_argument("--since", help="received at or after: 24h, 7d or an ISO time")
    group.add_argument("--until", help="received before: 24h, 7d or an ISO time")


def given(args: argparse.Namespace) -> bool:
    """True if any criterion was given."""
    return any((args.message_id, args.sender, args.subject, args.subject_contains, args.body, args.since, args.until))


def query_from(args: argparse.Namespace):
    """The :class:`workers.response.search.MessageQuery` the flags describe."""
    from workers.response.search import MessageQuery, parse_when

    return MessageQuery(
        internet_message_id=args.message_id, sender=args.sender, subject=args.subject,
        subject_contains=args.subject_contains, body=args.body,
        since=parse_when(args.since) if args.since else None,
        until=parse_when(args.until) if args.until else None)
