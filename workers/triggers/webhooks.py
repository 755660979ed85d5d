"""Signed outbound webhooks: the email event POSTed as JSON, delivered by RQ jobs with back-off retries.

Signature: ``X-Graphhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``.
A receiver recomputes the HMAC over the raw body, compares in constant time,
and refuses timestamps older than five minutes (replays); :func:`verify` does
exactly that and docs/configuration.md shows the recipe in a few lines.
Deliveries that still fail after the last retry (or fail permanently, a 4xx)
are kept in Redis and can be replayed (``graphhook webhooks replay``).
The secret is never logged; URLs are logged without their query string.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any, Mapping

import requests

from graphhook.core.errors import GraphError, SignatureError, WebhookError
from workers import metrics
from workers.graph.mailbox import message_path
from workers.triggers.insightconnect import insightconnect_event
from workers.triggers.model import Config, WebhookConfig
from workers.triggers.rules import iter_attachments

log = logging.getLogger("graphhook.webhooks")

SIGNATURE_HEADER = "X-Graphhook-Signature"
EVENT_ID_HEADER = "X-Graphhook-Event-Id"
EVENT_SCHEMA = "graphhook.event/1"
TOLERANCE = 300  # s; signatures older (or newer) than this are refused as replays
FAILED = "graphhook:webhooks:failed"  # list of JSON dead letters: {webhook, event, error, status, failedAt}
STATS = "graphhook:webhooks:stats"  # hash: <webhook>:delivered / :failed_attempts / :dead
RETRYABLE_4XX = {408, 409, 425, 429}

_session: requests.Session | None = None


# --- signing (pure) ----------------------------------------------------------------------------

def sign(body: bytes, *, secret: str, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(body: bytes, header: str | None, *, secret: str, tolerance: int = TOLERANCE,
           now: float | None = None) -> int:
    """Check a signature header against the raw body; return its timestamp or raise SignatureError."""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        raise SignatureError("malformed signature header: no t=<unix seconds>") from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"signature timestamp is {int(now - timestamp)} s old (tolerance {tolerance} s): possible replay")
    expected = sign(body, secret=secret, timestamp=timestamp).split("v1=", 1)[1]
    if not any(hmac.compare_digest(expected, v) for v in parts.get("v1", [])):
        raise SignatureError("signature does not match the body")
    return timestamp


# --- events ------------------------------------------------------------------------------------

def event_id(mailbox: str, message_id: str, scope: str, webhook: str) -> str:
    """Stable id of one event: the same email, rule and webhook always give the same id (for dedupe)."""
    return hashlib.sha256("\x1f".join((mailbox, message_id, scope, webhook)).encode()).hexdigest()[:32]


def build_event(record: Mapping[str, Any], *, webhook: str, rule: str | None, message_id: str,
                subscription_id: str = "", scope: str = "", tenant: str = "") -> dict[str, Any]:
    """The versioned event for one email (graphhook format); ``message_id`` is its current id."""
    mailbox = str(record.get("mailbox") or "")
    extra = {"tenant": tenant} if tenant and tenant != "default" else {}  # with tenants: configured
    return {**extra,
        "schema": EVENT_SCHEMA,
        "id": event_id(mailbox, str(record.get("id") or ""), scope or (rule or "all_mail"), webhook),
        "type": "email.matched" if rule else "email.received",
        "rule": rule,
        "webhook": webhook,
        "subscriptionId": subscription_id,
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "email": {**record, "id": message_id, "originalId": record.get("id")},
    }


def attach_content(graph: Any, email: dict[str, Any], *, max_bytes: int) -> dict[str, Any]:
    """Add ``contentBytes`` (base64) to file attachments, nested ones included, within ``max_bytes`` in total;
    the rest get ``contentOmitted`` (``size_cap`` or ``unavailable``). Returns a new email dict."""
    email = json.loads(json.dumps(email))  # deep copy; the record is plain JSON
    mailbox, message_id = email["mailbox"], email["id"]
    budget = max_bytes
    for top in email.get("attachments") or []:
        path = f"{message_path(mailbox, message_id)}/attachments/{top['id']}"
        try:
            if top.get("kind") == "file":
                budget = _fill(top, lambda: graph.request("GET", f"{path}/$value").content, budget)
            elif top.get("kind") == "item" and isinstance(top.get("email"), dict):
                item = graph.get(path, params={"$expand": "microsoft.graph.itemattachment/item"}).get("item") or {}
                budget = _fill_nested(top["email"], item, budget)
        except GraphError as exc:
            log.warning("attachment content unavailable for %s: %s %s", top.get("name"), exc.status, exc.code)
            for a in [top, *iter_attachments(top.get("email") or {})]:
                a.setdefault("contentOmitted", "unavailable")
    return email


def _fill(attachment: dict[str, Any], fetch: Any, budget: int) -> int:
    size = attachment.get("size") or 0
    if size > budget:
        attachment["contentOmitted"] = "size_cap"
        return budget
    data = fetch() if callable(fetch) else fetch
    if len(data) > budget:
        attachment["contentOmitted"] = "size_cap"
        return budget
    attachment["contentBytes"] = base64.b64encode(data).decode()
    return budget - len(data)


def _fill_nested(record: dict[str, Any], item: Mapping[str, Any], budget: int) -> int:
    graph_attachments = {a.get("id"): a for a in item.get("attachments") or []}
    for attachment in record.get("attachments") or []:
        source = graph_attachments.get(attachment.get("id")) or {}
        if attachment.get("kind") == "file" and source.get("contentBytes") is not None:
            budget = _fill(attachment, base64.b64decode(source["contentBytes"]), budget)
        elif attachment.get("kind") == "file":
            attachment["contentOmitted"] = "unavailable"
        elif isinstance(attachment.get("email"), dict):
            budget = _fill_nested(attachment["email"], source.get("item") or {}, budget)
    return budget


def render(hook: WebhookConfig, event: dict[str, Any], graph: Any = None) -> bytes:
    """The exact body to POST: the event in the webhook's format, with content when configured."""
    if hook.include_content and graph is not None:
        event = {**event, "email": attach_content(graph, event["email"], max_bytes=hook.max_content_bytes)}
    payload = insightconnect_event(event["email"]) if hook.format == "insightconnect" else event
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


# --- delivery ----------------------------------------------------------------------------------

def _http() -> requests.Session:
    """One keep-alive session per process, with a connection per job thread (workers/concurrent.py)."""
    global _session
    if _session is None:
        from requests.adapters import HTTPAdapter

        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=64)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        _session = session
    return _session


def post(hook: WebhookConfig, body: bytes, event_id_value: str, *, now: float | None = None,
         session: requests.Session | None = None) -> int:
    """POST one signed body; return the status or raise WebhookError (``permanent`` for most 4xx)."""
    timestamp = int(time.time() if now is None else now)
    headers = {"Content-Type": "application/json", "User-Agent": "graphhook/1",
               EVENT_ID_HEADER: event_id_value, SIGNATURE_HEADER: sign(body, secret=hook.secret, timestamp=timestamp)}
    url_for_logs = hook.url.split("?")[0]
    try:
        response = (session or _http()).post(hook.url, data=body, headers=headers, allow_redirects=False,
                                             timeout=(min(5.0, hook.timeout), hook.timeout))
    except requests.RequestException as exc:
        raise WebhookError(f"webhook {hook.name!r} POST {url_for_logs}: {type(exc).__name__}") from None
    if 200 <= response.status_code < 300:
        return response.status_code
    permanent = 400 <= response.status_code < 500 and response.status_code not in RETRYABLE_4XX
    raise WebhookError(f"webhook {hook.name!r} POST {url_for_logs} → {response.status_code}",
                       status=response.status_code, permanent=permanent)


def enqueue(r: Any, queue: str, hook: WebhookConfig, event: dict[str, Any], *,
            done_marker: tuple[str, int] | None = None) -> str:
    """Queue a delivery job on RQ queue ``queue``, retried with the webhook's back-off; return the job id.

    ``done_marker`` (key, TTL in s) is set to ``done`` in the same MULTI/EXEC as the job is
    created: the job exists if and only if the marker says done, whatever crashes in between.
    """
    from rq import Retry

    from graphhook.core import jobformat

    # A fired trigger's delivery goes to the front of the queue (and so does each retry): it never waits
    # behind a campaign's backlog of fetches.
    retry = Retry(max=len(hook.backoff), interval=list(hook.backoff), enqueue_at_front=True) if hook.backoff else None
    q = jobformat.queue(queue, r)
    job = q.create_job("workers.jobs.deliver_webhook", args=(hook.name, event), retry=retry,
                       description=f"webhook {hook.name} {event['id']}")
    q.get_redis_server_version()  # RQ asks before enqueueing; ask outside the transaction
    with r.pipeline(transaction=True) as pipe:
        pipe.multi()
        q.enqueue_job(job, pipeline=pipe, at_front=True)
        if done_marker is not None:
            pipe.set(done_marker[0], f"done:{job.id}", ex=done_marker[1])
        pipe.execute()
    return job.id


def deliver(webhook: str, event: dict[str, Any]) -> int:
    """Render, sign and POST one event (the ``workers.jobs.deliver_webhook`` job). Raises to let RQ retry; the last failure is kept for replay."""
    from rq import get_current_job

    from workers.runtime import context
    from workers.triggers.config import config_for

    # Attachment content is read with the token of the tenant the email came from, never another's.
    ctx = context().for_tenant(str(event.get("tenant") or ""))
    hook = config_for(ctx.settings.config_path).webhooks.get(webhook)
    if hook is None:
        _dead(ctx.redis, webhook, event, f"webhook {webhook!r} is no longer configured", 0)
        return 0
    try:
        status = post(hook, render(hook, event, ctx.graph), event["id"])
    except WebhookError as exc:
        ctx.redis.hincrby(STATS, f"{webhook}:failed_attempts", 1)
        job = get_current_job()
        last = exc.permanent or job is None or not job.retries_left
        metrics.webhook_result(webhook, ok=False, final=last)
        log.warning("%s (event %s)%s", exc, event["id"], "; giving up, kept for replay" if last else "; will retry")
        if last:
            _dead(ctx.redis, webhook, event, str(exc), exc.status)
            return exc.status
        raise
    ctx.redis.hincrby(STATS, f"{webhook}:delivered", 1)
    metrics.webhook_result(webhook, ok=True)
    log.info("webhook %s delivered event %s (%s)", webhook, event["id"], status)
    return status


def _dead(r: Any, webhook: str, event: dict[str, Any], error: str, status: int) -> None:
    r.rpush(FAILED, json.dumps({"webhook": webhook, "event": event, "error": error, "status": status,
                                "failedAt": time.time()}, separators=(",", ":")))
    r.hincrby(STATS, f"{webhook}:dead", 1)


def failed(r: Any) -> list[dict[str, Any]]:
    """Deliveries that gave up, oldest first."""
    return [json.loads(x) for x in r.lrange(FAILED, 0, -1)]


def replay_failed(r: Any, queue: str, config: Config, *, webhook: str | None = None) -> int:
    """Re-queue kept failures (all, or one webhook's) whose webhook is still configured; return how many."""
    count = 0
    for _ in range(r.llen(FAILED)):
        raw = r.lpop(FAILED)
        if raw is None:
            break
        item = json.loads(raw)
        hook = config.webhooks.get(item["webhook"])
        if (webhook and item["webhook"] != webhook) or hook is None:
            r.rpush(FAILED, raw)
            continue
        enqueue(r, queue, hook, item["event"])
        count += 1
    return count
