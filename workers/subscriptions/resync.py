"""Delta resync of one mailbox folder: no mail lost after ``missed``, ``subscriptionRemoved`` or downtime.

https://learn.microsoft.com/graph/delta-query-messages — the deltaLink is kept
in Redis per folder. The first sync sets a baseline from a ``receivedDateTime``
window (empty unless a backfill is asked for), so old mail does not fire
triggers. Later syncs follow nextLinks to the end; new messages received since
the previous sync (less a margin) are enqueued as ``created`` notifications
through the same job as push notifications, so the exactly-once markers hold
across push and delta. An evicted token (410 ``SyncStateNotFound``) is replaced
by a new baseline whose window starts at the previous sync, so the gap is still
covered.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Callable

from rq import Retry

from graphhook.core import jobformat, keys
from graphhook.core.errors import GraphError
from workers.runtime import Context, context
from workers.subscriptions.registry import format_time, parse_time

log = logging.getLogger("graphhook.resync")

PAGE_SIZE = 100  # Prefer: odata.maxpagesize
RECEIVED_MARGIN = dt.timedelta(minutes=15)  # receivedDateTime may precede the item's visibility in delta
DEFAULT_GAP_WINDOW = dt.timedelta(hours=24)  # new baseline window when no previous sync time is known
LOCK_SECONDS = 120  # one resync of a folder at a time; renewed each page, so a crashed one frees it after this
MAX_PASSES = 3  # a resync asked for while one runs makes the running one go again (bounded)
RESYNC_JOB = "workers.jobs.resync_folder"
JOB_CHUNK = 50  # notifications per enqueued job
PROCESS_JOB = "workers.jobs.process_notifications"


@dataclass(frozen=True)
class ResyncResult:
    """What a resync did."""

    mailbox: str
    folder: str
    mode: str  # baseline | incremental | rebaseline | skipped
    seen: int = 0
    enqueued: int = 0
    pages: int = 0


def _delta_path(user_id: str, folder: str) -> str:
    return f"users/{user_id}/mailFolders/{folder}/messages/delta"


def _walk(ctx: Context, url: str, params: dict[str, str] | None,
          on_page: Callable[[], object] = lambda: None) -> tuple[list[dict[str, Any]], str, int]:
    """Follow nextLinks to the deltaLink; return the items, the deltaLink and the page count."""
    headers = {"Prefer": f"odata.maxpagesize={PAGE_SIZE}"}
    items: list[dict[str, Any]] = []
    pages = 0
    page = ctx.graph.get(url, params=params, headers=headers)
    while True:
        on_page()
        pages += 1
        items.extend(page.get("value", []))
        if page.get("@odata.deltaLink"):
            return items, page["@odata.deltaLink"], pages
        next_link = page.get("@odata.nextLink")
        if not next_link:
            raise GraphError(0, "NoDeltaLink", "delta page has neither @odata.nextLink nor @odata.deltaLink",
                             method="GET", url=url)
        page = ctx.graph.get(next_link, headers=headers)


def _initial_params(start: dt.datetime) -> dict[str, str]:
    return {"$select": "id,receivedDateTime", "$filter": f"receivedDateTime ge {format_time(start)}"}


def enqueue_created(ctx: Context, user_id: str, message_ids: list[str], subscription_id: str) -> int:
    """Enqueue messages as ``created`` notifications for the normal processing job."""
    queue = jobformat.queue(ctx.settings.queue_name, ctx.redis)
    items = [{
        "subscriptionId": subscription_id or "delta", "tenantId": ctx.settings.tenant_id, "changeType": "created",
        "resource": f"Users/{user_id}/Messages/{mid}", "resourceData": {"id": mid},
    } for mid in message_ids]
    for start in range(0, len(items), JOB_CHUNK):
        queue.enqueue(PROCESS_JOB, items[start:start + JOB_CHUNK], retry=Retry(max=5, interval=[5, 30, 120, 600, 1800]))
    return len(items)


def resync_folder(ctx: Context, mailbox: str, folder: str, user_id: str, *, subscription_id: str = "",
                  since: dt.timedelta | None = None, now: dt.datetime | None = None,
                  clock: Callable[[], dt.datetime] | None = None) -> ResyncResult:
    """Resync one folder; ``since`` asks for a backfill window on a new baseline.

    One resync of a folder runs at a time. One asked for meanwhile is not dropped: the mail it is for
    may have arrived after the running one read its pages. The running one goes again when it is done,
    and a follow-up job is scheduled in case the running one's process has died.
    """
    lock = ctx.redis.lock(keys.resync_lock(user_id, folder), timeout=LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        _ask_again(ctx, mailbox, folder, user_id, subscription_id)
        log.info("resync of %s/%s already running; it goes again when done", mailbox, folder)
        return ResyncResult(mailbox, folder, "skipped")
    try:
        result = None
        for _ in range(MAX_PASSES):
            ctx.redis.hdel(keys.delta(user_id, folder), "rerunRequested")
            moment = now or (clock() if clock else _utcnow())
            result = _sync(ctx, mailbox, folder, user_id, subscription_id, since if result is None else None,
                           moment, lock.reacquire)
            if not ctx.redis.hexists(keys.delta(user_id, folder), "rerunRequested"):
                break
        assert result is not None
        return result
    finally:
        try:
            lock.release()
        except Exception:  # expired meanwhile: nothing to release
            pass


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _ask_again(ctx: Context, mailbox: str, folder: str, user_id: str, subscription_id: str) -> None:
    """Have the running resync go again, and schedule one for when its lock would lapse if its process died."""
    ctx.redis.hset(keys.delta(user_id, folder), "rerunRequested", "1")
    left = max(1.0, (ctx.redis.pttl(keys.resync_lock(user_id, folder)) or 0) / 1000)  # until the lock lapses
    if ctx.redis.set(keys.resync_followup(user_id, folder), "1", nx=True, ex=int(left) + 1):
        jobformat.queue(ctx.settings.queue_name, ctx.redis).enqueue_in(
            dt.timedelta(seconds=left + 5), RESYNC_JOB, mailbox, folder, user_id, subscription_id, ctx.tenant,
            retry=Retry(max=5, interval=[5, 30, 120, 600, 1800]))


def _sync(ctx: Context, mailbox: str, folder: str, user_id: str, subscription_id: str,
          since: dt.timedelta | None, now: dt.datetime, on_page: Callable[[], object]) -> ResyncResult:
    """One pass: walk the folder's delta to its end and enqueue the new messages."""
    state = {k.decode(): v.decode() for k, v in ctx.redis.hgetall(keys.delta(user_id, folder)).items()}
    link, last_sync = state.get("deltaLink"), state.get("lastSync")
    if since is not None or not link:
        mode = "baseline"
        window_start = now - (since or dt.timedelta(0)) - dt.timedelta(minutes=1)
        items, new_link, pages = _walk(ctx, _delta_path(user_id, folder), _initial_params(window_start), on_page)
        fresh = [i for i in items if "@removed" not in i]
    else:
        mode = "incremental"
        cutoff = parse_time(last_sync) - RECEIVED_MARGIN if last_sync else now - DEFAULT_GAP_WINDOW
        try:
            items, new_link, pages = _walk(ctx, link, None, on_page)
        except GraphError as exc:
            if exc.status != 410:
                raise
            # Token evicted (SyncStateNotFound): a new baseline starting at the last sync covers the gap.
            mode = "rebaseline"
            log.warning("delta token for %s/%s expired (%s); new baseline from %s", mailbox, folder, exc.code, cutoff)
            items, new_link, pages = _walk(ctx, _delta_path(user_id, folder), _initial_params(cutoff), on_page)
        fresh = [i for i in items if "@removed" not in i and
                 (not i.get("receivedDateTime") or parse_time(i["receivedDateTime"]) >= cutoff)]
    ids = list(dict.fromkeys(i["id"] for i in fresh))
    enqueued = enqueue_created(ctx, user_id, ids, subscription_id) if ids else 0
    ctx.redis.hset(keys.delta(user_id, folder), mapping={
        "deltaLink": new_link, "lastSync": format_time(now), "mailbox": mailbox, "lastMode": mode,
        "lastEnqueued": str(enqueued)})
    log.info("resync %s/%s (%s): %d item(s) seen, %d enqueued, %d page(s)", mailbox, folder, mode,
             len(items), enqueued, pages)
    return ResyncResult(mailbox, folder, mode, len(items), enqueued, pages)


def last_sync(ctx: Context, user_id: str, folder: str) -> dt.datetime | None:
    """When this folder was last synced, if ever."""
    value = ctx.redis.hget(keys.delta(user_id, folder), "lastSync")
    return parse_time(value.decode()) if value else None


def resync_job(mailbox: str, folder: str, user_id: str, subscription_id: str = "", tenant: str = "") -> dict[str, Any]:
    """Resync one folder in this process (the ``workers.jobs.resync_folder`` job), with its tenant's token.

    Jobs enqueued before tenants existed name none: the tenant of their subscription is used.
    """
    ctx = context()
    if not tenant and subscription_id:
        tenant = (ctx.redis.hget(keys.subscription(subscription_id), "tenant") or b"").decode()
    result = resync_folder(ctx.for_tenant(tenant), mailbox, folder, user_id, subscription_id=subscription_id)
    return result.__dict__
