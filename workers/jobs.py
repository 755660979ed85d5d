"""RQ jobs, enqueued by dotted name (``workers.jobs.process_notifications``) from the receiver.

Jobs take plain data and are idempotent: a message is processed once per
mailbox however often Graph delivers its notification.
"""

from __future__ import annotations

import logging
from typing import Any

from receiver import keys
from receiver.errors import NotFoundError
from receiver.notifications import Notification

from .dispatch import dispatch
from .messages import email_record, fetch_message
from .runtime import context

log = logging.getLogger("graphhook.jobs")

CLAIM_SECONDS = 15 * 60  # a crashed job's claim expires so a retry can take the message
DONE_SECONDS = 14 * 24 * 3600  # Graph retries for 4 hours; keep markers well beyond that


def process_notifications(items: list[dict[str, Any]]) -> dict[str, int]:
    """Fetch each new message and fire its triggers; skip duplicates. Returns counts."""
    ctx = context()
    from .rich import open_encrypted  # rich notifications: dataSignature check + decrypt before acting

    items = open_encrypted(items, ctx.settings)
    counts = {"processed": 0, "duplicates": 0, "gone": 0}
    failures: list[Exception] = []
    for item in items:
        notification = Notification.from_graph(item)
        if notification.change_type != "created":
            continue
        ref = notification.message_ref()
        marker = keys.processed(ref.user_id, ref.message_id)
        if not ctx.redis.set(marker, "claimed", nx=True, ex=CLAIM_SECONDS):
            counts["duplicates"] += 1
            continue
        try:
            message = fetch_message(ctx.graph, ref.user_id, ref.message_id)
        except NotFoundError:
            # Moved or deleted before we got to it; delta resync picks moved mail up.
            ctx.redis.set(marker, "gone", ex=DONE_SECONDS)
            counts["gone"] += 1
            continue
        except Exception as exc:
            ctx.redis.delete(marker)
            failures.append(exc)
            continue
        try:
            mailbox = ctx.redis.hget(keys.subscription(notification.subscription_id), "mailbox")
            record = email_record(message, mailbox=(mailbox or b"").decode() or ref.user_id)
            dispatch(ctx, record, subscription_id=notification.subscription_id)
        except Exception as exc:
            ctx.redis.delete(marker)
            failures.append(exc)
            continue
        ctx.redis.set(marker, "done", ex=DONE_SECONDS)
        counts["processed"] += 1
    if failures:
        # Re-raise so RQ retries the job; what succeeded is marked done and will be skipped.
        raise failures[0]
    return counts


def handle_lifecycle(item: dict[str, Any]) -> str:
    """Act on a lifecycle event (reauthorize, recreate + resync, resync); see :mod:`workers.lifecycle`."""
    from .lifecycle import handle

    return handle(context(), item)
