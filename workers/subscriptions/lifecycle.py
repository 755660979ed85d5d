"""Acting on lifecycle notifications (graph-protocol.md §3).

- ``reauthorizationRequired`` → reauthorize at once (renew if reauthorize fails), so delivery resumes; when the
  tenant refuses the app (consent revoked: 403, or AADSTS700016 at the token endpoint) the tenant is recorded
  ``consent_missing`` and the job ends (no retry loop): the renewer renews it once the tenant works again;
- ``subscriptionRemoved`` → create a replacement, then resync the folder to cover the gap;
- ``missed`` → resync the folder.
"""

from __future__ import annotations

import logging
from typing import Any

from graphhook.core import keys
from graphhook.core.errors import AccessDeniedError, AuthError, GraphError, NotFoundError
from graphhook.core.notifications import Notification
from workers.runtime import Context
from workers.subscriptions import operations, registry, tenant_state
from workers.subscriptions.registry import Record
from workers.subscriptions.resync import resync_folder

log = logging.getLogger("graphhook.lifecycle")

CREATE_LOCK_SECONDS = 120
# How long a replaced subscription's id still leads to its replacement: longer than the lifecycle job's
# retries (receiver/store.py: 10 s … 1 h), so a retry after a failed resync still resyncs.
REPLACED_SECONDS = 24 * 3600


def replace_subscription(ctx: Context, old: Record) -> Record:
    """Create a new subscription for the same mailbox folder as ``old`` and forget ``old``.

    A per-folder lock keeps the renewer and a lifecycle job from both creating one. ``old``'s id keeps
    pointing at the replacement for a day (:func:`replacement_of`), so a lifecycle job that is retried
    after the replacement (its resync failed, its worker died) still resyncs the gap.
    """
    with ctx.redis.lock(f"graphhook:create-lock:{old.mailbox.lower()}:{old.folder.lower()}",
                        timeout=CREATE_LOCK_SECONDS, blocking_timeout=CREATE_LOCK_SECONDS):
        new = next((record for record in registry.all_records(ctx.redis)
                    if record.key == old.key and record.id != old.id and record.state == "active"), None)
        if new is None:  # else someone replaced it already
            new = operations.create(ctx.graph, ctx.redis, ctx.settings, old.mailbox, old.folder, user_id=old.user_id)
        pipe = ctx.redis.pipeline()
        pipe.set(keys.replaced_by(old.id), new.id, ex=REPLACED_SECONDS)
        pipe.delete(keys.subscription(old.id))
        pipe.srem(keys.SUBSCRIPTIONS, old.id)
        pipe.execute()
        return new


def replacement_of(ctx: Context, subscription_id: str) -> Record | None:
    """The registered subscription that replaced ``subscription_id``, if it was replaced within a day."""
    new_id = ctx.redis.get(keys.replaced_by(subscription_id))
    return registry.load(ctx.redis, new_id.decode()) if new_id else None


def handle(ctx: Context, item: dict[str, Any]) -> str:
    """Handle one lifecycle event; returns what was done (for the job result and logs)."""
    event = Notification.from_graph(item)
    sid = event.subscription_id
    record = registry.load(ctx.redis, sid)
    if record is None and event.lifecycle_event in ("subscriptionRemoved", "reauthorizationRequired"):
        new = replacement_of(ctx, sid)
        if new is not None:
            ctx = ctx.for_tenant(new.tenant)
            # Replaced already: by this same job before it failed (a retry), by a duplicate of the event, or
            # by the renewer. Resync again (idempotent: exactly-once markers), so the gap is never skipped.
            result = resync_folder(ctx, new.mailbox, new.folder, new.user_id, subscription_id=new.id)
            log.info("lifecycle event %s for %s, already replaced by %s: resync enqueued %d",
                     event.lifecycle_event, sid, new.id, result.enqueued)
            return "resynced"
    if record is None:
        log.warning("lifecycle event %s for unregistered subscription %s ignored", event.lifecycle_event, sid)
        return "ignored"
    try:
        ctx = ctx.for_tenant(record.tenant)  # act with the token of the subscription's own tenant
    except KeyError:  # its tenant was removed from the configuration: the renewer deletes it or lets it expire
        log.warning("lifecycle event %s for %s of tenant %s, no longer configured, ignored", event.lifecycle_event,
                    sid, record.tenant)
        return "ignored"
    if event.lifecycle_event == "reauthorizationRequired":
        try:
            return _reauthorize(ctx, record)
        except (AuthError, AccessDeniedError) as exc:
            if not tenant_state.is_refusal(exc):
                raise
            # The tenant refuses the app (consent revoked, secret expired): retrying the job cannot help. Record
            # it; the renewer retries the tenant with back-off and renews this subscription once it works again.
            state, reason = tenant_state.classify(exc, client_id=ctx.settings.client_id, tenant_id=ctx.settings.tenant_id)
            registry.update(ctx.redis, sid, state="renew_failed", lastError=reason[:300])
            tenant_state.mark(ctx.redis, record.tenant, state, reason)
            log.warning("reauthorize of %s refused: %s", sid, reason)
            return state
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


def _reauthorize(ctx: Context, record: Record) -> str:
    """Reauthorize ``record`` (recreate it if Graph lost it; renew it if reauthorize is refused)."""
    try:
        operations.reauthorize(ctx.graph, ctx.redis, record.id)
        log.info("reauthorized subscription %s", record.id)
        return "reauthorized"
    except NotFoundError:
        new = replace_subscription(ctx, record)
        resync_folder(ctx, new.mailbox, new.folder, new.user_id, subscription_id=new.id)
        return "recreated"
    except GraphError as exc:
        log.warning("reauthorize of %s failed (%s); renewing instead", record.id, exc.code)
        operations.renew(ctx.graph, ctx.redis, record)
        return "renewed"
