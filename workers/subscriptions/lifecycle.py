"""Acting on lifecycle notifications (graph-protocol.md §3).

- ``reauthorizationRequired`` → reauthorize at once (renew if reauthorize fails), so delivery resumes;
- ``subscriptionRemoved`` → create a replacement, then resync the folder to cover the gap;
- ``missed`` → resync the folder.
"""

from __future__ import annotations

import logging
from typing import Any

from graphhook.core.errors import GraphError, NotFoundError
from graphhook.core.notifications import Notification
from workers.runtime import Context
from workers.subscriptions import operations, registry
from workers.subscriptions.registry import Record
from workers.subscriptions.resync import resync_folder

log = logging.getLogger("graphhook.lifecycle")

CREATE_LOCK_SECONDS = 120


def replace_subscription(ctx: Context, old: Record) -> Record:
    """Create a new subscription for the same mailbox folder as ``old`` and forget ``old``.

    A per-folder lock keeps the renewer and a lifecycle job from both creating one.
    """
    with ctx.redis.lock(f"graphhook:create-lock:{old.mailbox.lower()}:{old.folder.lower()}",
                        timeout=CREATE_LOCK_SECONDS, blocking_timeout=CREATE_LOCK_SECONDS):
        for record in registry.all_records(ctx.redis):
            if record.key == old.key and record.id != old.id and record.state == "active":
                registry.remove(ctx.redis, old.id)
                return record  # someone replaced it already
        new = operations.create(ctx.graph, ctx.redis, ctx.settings, old.mailbox, old.folder, user_id=old.user_id)
        registry.remove(ctx.redis, old.id)
        return new


def handle(ctx: Context, item: dict[str, Any]) -> str:
    """Handle one lifecycle event; returns what was done (for the job result and logs)."""
    event = Notification.from_graph(item)
    sid = event.subscription_id
    record = registry.load(ctx.redis, sid)
    if record is None:
        log.warning("lifecycle event %s for unregistered subscription %s ignored", event.lifecycle_event, sid)
        return "ignored"
    if event.lifecycle_event == "reauthorizationRequired":
        try:
            operations.reauthorize(ctx.graph, ctx.redis, sid)
            log.info("reauthorized subscription %s", sid)
            return "reauthorized"
        except NotFoundError:
            new = replace_subscription(ctx, record)
            resync_folder(ctx, new.mailbox, new.folder, new.user_id, subscription_id=new.id)
            return "recreated"
        except GraphError as exc:
            log.warning("reauthorize of %s failed (%s); renewing instead", sid, exc.code)
            operations.renew(ctx.graph, ctx.redis, record)
            return "renewed"
    if event.lifecycle_event == "subscriptionRemoved":
        registry.update(ctx.redis, sid, state="removed")
        new = replace_subscription(ctx, record)
        result = resync_folder(ctx, new.mailbox, new.folder, new.user_id, subscription_id=new.id)
        log.info("subscription %s was removed; replaced by %s, resync enqueued %d", sid, new.id, result.enqueued)
        return "recreated"
    # missed: some notifications were not delivered; delta finds what they were about.
    result = resync_folder(ctx, record.mailbox, record.folder, record.user_id, subscription_id=sid)
    log.info("missed notifications on %s: resync enqueued %d", sid, result.enqueued)
    return "resynced"
