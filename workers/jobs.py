"""Every RQ job, enqueued by dotted name (``workers.jobs.process_notifications``, …).

A job's dotted name is stored in Redis with the job, so every entry point lives in this one module and
keeps its name whatever the code behind it becomes.

Exactly once, although Graph delivers at least once (duplicates, reordering,
retries, delta overlaps): each (mailbox, message, change type) gets a Redis
marker. A job *claims* it (``claimed:<job id>``, expiring after
``CLAIM_SECONDS`` so a crashed worker cannot hold it for ever), does the work,
then marks it ``done`` for ``GRAPHHOOK_DEDUPE_SECONDS`` (default 7 days). A
duplicate in another job sees the claim or the mark and skips; a retry of the
*same* RQ job (after an exception, or after its worker died) owns the claim and
carries on. So a message's triggers fire once per mailbox.

- ``created``: fetch (several new messages of one mailbox in one ``$batch``), build the record,
  dispatch to the triggers.
- ``updated``: remembered per change key (``@odata.etag``); never re-fires ``created`` triggers.
- ``deleted``: recorded, not fetched (the message is gone).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from rq import get_current_job

from graphhook.core import keys, logs
from graphhook.core.errors import GraphError, MailboxBusy, MalformedNotification, NotFoundError
from graphhook.core.notifications import MessageRef, Notification
from graphhook.core.settings import DEFAULT_TENANT
from workers import metrics
from workers.records.messages import Fetcher, FetchOptions
from workers.runtime import Context, context
from workers.subscriptions import resync
from workers.triggers import engine, webhooks
from workers.triggers.dispatch import dispatch

log = logging.getLogger("graphhook.jobs")

CLAIM_SECONDS = 15 * 60  # a crashed job's claim expires so another delivery can take the message
RETRY_INTERVALS = [5, 30, 120, 600, 1800]  # s; used when the job was enqueued without a Retry

# Take the marker if it is free or already claimed by this job (a retry); refresh the claim's expiry.
_CLAIM = """
local v = redis.call('GET', KEYS[1])
if (not v) or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
  return 1
end
return 0
"""
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def marker(user_id: str, message_id: str, change_type: str = "created", etag: str | None = None) -> str:
    """The exactly-once marker of one (mailbox, message, change type[, change key])."""
    base = keys.processed(user_id.lower(), message_id)
    if change_type == "created":
        return base
    # Each distinct update has its own change key; duplicates of one update share it.
    return f"{base}:{change_type}" + (f":{etag}" if etag and change_type == "updated" else "")


def _job_owner() -> str:
    """``claimed:<RQ job id>``: the same job retried owns its claims; anything else is a duplicate."""
    job = get_current_job()
    if job is None:
        return f"claimed:{uuid.uuid4().hex}"
    if job.retries_left is None:
        # Enqueued without a retry policy: declare ours, so an exception or a dead worker
        # (RQ's abandoned-job cleanup) puts this same job back rather than dropping the mail.
        job.retries_left, job.retry_intervals = len(RETRY_INTERVALS), list(RETRY_INTERVALS)
        job.connection.hset(job.key, mapping={"retries_left": job.retries_left,
                                              "retry_intervals": json.dumps(RETRY_INTERVALS)})
    return f"claimed:{job.id}"


def _mailboxes(ctx: Context, subscription_ids: set[str]) -> dict[str, tuple[str, str, str, str, str]]:
    """(mailbox, folder, Graph user id, tenant name, tenant id) of each registered subscription; empty strings
    when not registered."""
    pipe = ctx.redis.pipeline(transaction=False)
    ordered = sorted(subscription_ids)
    for sid in ordered:
        pipe.hmget(keys.subscription(sid), "mailbox", "folder", "userId", "tenant", "tenantId")
    out = {}
    for sid, values in zip(ordered, pipe.execute()):
        mailbox, folder, user_id, tenant, tenant_id = ((value or b"").decode() for value in values)
        out[sid] = (mailbox, folder, user_id, tenant or (DEFAULT_TENANT if user_id else ""), tenant_id)
    return out


def _tenant_of(ctx: Context, notification: Notification, places: dict[str, tuple[str, ...]]) -> Context | None:
    """The context of the tenant the notification belongs to, or None when it belongs to none of ours.

    A registered subscription's tenant is the registry's, and the notification must name that tenant's
    id. Items of an unregistered subscription (removed since, or the resync's ``delta`` items, which the
    worker built itself) belong to the configured tenant with their tenant id.
    """
    _, _, _, tenant, tenant_id = places.get(notification.subscription_id, ("", "", "", "", ""))
    claimed = notification.tenant_id.lower()
    if tenant:
        if tenant_id and claimed != tenant_id.lower():
            return None
        try:
            return ctx.for_tenant(tenant)
        except KeyError:  # a tenant removed from the configuration: its mail is no longer ours to act on
            return None
    from workers.triggers.config import config_for
    from workers.triggers.tenants import tenants_of

    for candidate in tenants_of(config_for(ctx.settings.config_path), ctx.settings):
        if candidate.tenant_id == claimed:
            return ctx.for_tenant(candidate.name)
    return None


def _own_message(notification: Notification, places: dict[str, tuple[str, ...]]) -> MessageRef | None:
    """The notification's message, or None when it is not in its subscription's mailbox (or not a message).

    Defence in depth behind the receiver's check (receiver/intake.py): a job planted or altered in
    Redis must not make the worker fetch or act on another mailbox. Items of a subscription that is
    no longer registered (removed since the receiver accepted them, or the resync's ``delta``
    pseudo-subscription, built by the worker itself from the registry) carry no user id to compare.
    """
    try:
        ref = notification.message_ref()
    except MalformedNotification:
        return None
    owner = places.get(notification.subscription_id, ("", "", ""))[2]
    return ref if not owner or ref.is_user(owner) else None


def process_notifications(items: list[dict[str, Any]]) -> dict[str, int]:
    """Handle change notifications exactly once each; returns counts. Raises (so RQ retries) if any failed."""
    ctx = context()
    from workers.records.rich import open_encrypted  # rich notifications: dataSignature check + decrypt before acting

    items = open_encrypted(items, ctx.settings)
    counts = {"processed": 0, "duplicates": 0, "gone": 0, "updated": 0, "deleted": 0, "refused": 0}
    notifications = [Notification.from_graph(item) for item in items]
    owner = _job_owner()
    claim = ctx.redis.register_script(_CLAIM)
    window = ctx.settings.dedupe_seconds
    places = _mailboxes(ctx, {n.subscription_id for n in notifications if n.change_type is not None})
    options = FetchOptions.from_settings(ctx.settings)
    failures: list[Exception] = []
    claimed = []
    seen: set[str] = set()
    for notification in notifications:
        if notification.change_type is None:
            continue
        ref = _own_message(notification, places)
        tenant_ctx = _tenant_of(ctx, notification, places) if ref is not None else None
        if ref is None or tenant_ctx is None:
            counts["refused"] += 1
            metrics.notification_handled("refused", subscription_id=notification.subscription_id,
                                         change_type=notification.change_type,
                                         tenant=places.get(notification.subscription_id, ("",) * 4)[3])
            continue
        etag = (notification.resource_data or {}).get("@odata.etag")
        key = marker(ref.user_id, ref.message_id, notification.change_type, etag)
        ids = {"notification_id": logs.notification_id(notification.to_job()), "message_id": ref.message_id,
               "subscription_id": notification.subscription_id, "change_type": notification.change_type,
               "tenant": tenant_ctx.tenant}
        # The same notification twice in this job would pass the claim twice (this job owns it).
        if key in seen or not claim(keys=[key], args=[owner, CLAIM_SECONDS]):
            counts["duplicates"] += 1
            metrics.notification_handled("duplicates", **ids)
            continue
        seen.add(key)
        claimed.append((notification, ref, key, ids, tenant_ctx))
    fetchers: dict[str, Fetcher] = {}
    try:
        prefetched = _prefetch([(n, ref, tenant_ctx) for n, ref, _, _, tenant_ctx in claimed], fetchers, options)
        for notification, ref, key, ids, tenant_ctx in claimed:
            fetcher = fetchers.get(ref.user_id)
            if fetcher is None:
                fetcher = fetchers[ref.user_id] = Fetcher(tenant_ctx.graph, ref.user_id, options)
            try:
                with logs.bind(**ids):
                    outcome = _handle(tenant_ctx, notification, ref.user_id, ref.message_id, places, fetcher,
                                      prefetched.get(ref.message_id))
            except Exception as exc:  # noqa: BLE001 — any failure: give the message back and retry the job
                ctx.redis.eval(_RELEASE, 1, key, owner)
                if isinstance(exc, MailboxBusy):
                    log.info("message %s deferred: %s", ref.message_id[-12:], exc, extra=ids)
                else:
                    log.warning("notification for message %s failed: %s", ref.message_id[-12:], exc, extra=ids)
                failures.append(exc)
                continue
            ctx.redis.set(key, outcome, ex=window)
            counts[outcome] += 1
            metrics.notification_handled(outcome, **ids)
    finally:
        for fetcher in fetchers.values():
            fetcher.close()  # temporary spool files; kept copies (GRAPHHOOK_ATTACHMENT_DIR) stay
    if counts["refused"]:
        log.warning("refused %d notification(s) whose resource is not a message of their subscription's mailbox",
                    counts["refused"])
    if failures:
        # RQ retries this same job (or, when Graph only asked us to wait, the worker defers it until the
        # mailbox's Retry-After has passed); what succeeded is marked and will be skipped.
        raise _first_failure(failures)
    return counts


def _first_failure(failures: list[Exception]) -> Exception:
    """A real failure if there is one (the job is retried); otherwise the longest Retry-After (it is deferred)."""
    real = [exc for exc in failures if not isinstance(exc, MailboxBusy)]
    if real:
        return real[0]
    return max(failures, key=lambda exc: exc.seconds)  # type: ignore[attr-defined]


def _prefetch(claimed: list[tuple[Notification, Any, Context]], fetchers: dict[str, Fetcher],
              options: FetchOptions) -> dict[str, Any]:
    """Fetch the new messages of one mailbox together in a ``$batch`` when a job holds several.

    One round trip instead of one per message (https://learn.microsoft.com/graph/json-batching);
    a message whose part failed is fetched (and its error handled) on its own afterwards.
    """
    by_user: dict[str, list[str]] = {}
    contexts: dict[str, Context] = {}
    for notification, ref, tenant_ctx in claimed:
        if notification.change_type == "created" and ref.message_id not in by_user.get(ref.user_id, []):
            by_user.setdefault(ref.user_id, []).append(ref.message_id)
            contexts[ref.user_id] = tenant_ctx
    out: dict[str, Any] = {}
    for user_id, message_ids in by_user.items():
        ctx = contexts[user_id]
        if len(message_ids) < 2 or not ctx.graph.batch_supported:
            continue
        fetcher = fetchers.setdefault(user_id, Fetcher(ctx.graph, user_id, options))
        try:
            got = fetcher.prefetch(message_ids)
        except GraphError as exc:
            if exc.status in (400, 404, 405):
                ctx.graph.batch_supported = False  # a Graph stand-in without $batch: one request each
            log.info("batched fetch of %d messages failed (%s); fetching one by one", len(message_ids), exc)
            continue
        out.update({mid: answer for mid, answer in got.items() if not isinstance(answer, GraphError)
                    or isinstance(answer, NotFoundError)})
    return out


def _handle(ctx: Context, notification: Notification, user_id: str, message_id: str,
            places: dict[str, tuple[str, ...]], fetcher: Fetcher, prefetched: Any = None) -> str:
    """Do one notification's work; return the outcome stored in its marker."""
    if notification.change_type == "deleted":
        log.info("message %s deleted from mailbox %s", message_id[-12:], user_id)
        return "deleted"
    if notification.change_type == "updated":
        return "updated"  # created triggers fired already (or will, once); updates fire none of them
    mailbox, folder = places.get(notification.subscription_id, ("", ""))[:2]
    if ctx.graph.limiter is not None:
        if mailbox:
            ctx.graph.limiter.learn(mailbox, user_id)  # actions may address the mailbox by its address
        else:  # e.g. a delta resync item: name the mailbox as its subscription did
            mailbox = ctx.graph.limiter.address_of(user_id) or ""
    try:
        record = fetcher.record(message_id, mailbox=mailbox or user_id, folder=folder or None, prefetched=prefetched)
    except NotFoundError:
        # Moved or deleted before we got to it; delta resync picks moved mail up.
        return "gone"
    dispatch(ctx, record, subscription_id=notification.subscription_id)
    return "processed"


def handle_lifecycle(item: dict[str, Any]) -> str:
    """Act on a lifecycle event (reauthorize, recreate + resync, resync); see :mod:`workers.subscriptions.lifecycle`."""
    from workers.subscriptions.lifecycle import handle

    return handle(context(), item)


def deliver_webhook(webhook: str, event: dict[str, Any]) -> int:
    """Render, sign and POST one webhook event; raises so RQ retries with the webhook's back-off."""
    return webhooks.deliver(webhook, event)


def resume_rules(email: dict[str, Any], rule_names: list[str], subscription_id: str = "",
                 tenant: str = "") -> dict[str, list[str]]:
    """Re-run rules for an email after a failure, in its tenant; raises so RQ retries."""
    return engine.resume(email, rule_names, subscription_id, tenant)


def resync_folder(mailbox: str, folder: str, user_id: str, subscription_id: str = "", tenant: str = "") -> dict[str, Any]:
    """Delta-resync one mailbox folder (after lifecycle events and the renewer's safety sweep), in its tenant."""
    return resync.resync_job(mailbox, folder, user_id, subscription_id, tenant)
