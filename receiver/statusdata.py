"""What the status page shows, read from Redis into plain values (no Flask here).

Sources: the subscription registry (``graphhook:sub:*``), each tenant's state
(``graphhook:t:{name}:state``, written by the renewer), delta state
(``graphhook:delta:*``), the workers' recent-notifications list, the record
trigger's events (``graphhook:events``), RQ's own queues and registries.
Nothing secret is read into these values (clientState stays in Redis), and
job error texts pass through :func:`graphhook.core.logs.redact`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import redis
from rq import Queue
from rq.exceptions import DeserializationError

from graphhook.core import jobformat, keys, observe
from graphhook.core.logs import redact
from graphhook.core.settings import DEFAULT_TENANT
from graphhook.core.subhealth import RED, SubscriptionView, countdown, parse_time

RECENT_ROWS = 20
SUBSCRIPTION_ROWS = 500  # red ones first; the rest are counted, not listed (the page stays light)
FAILED_ROWS = 50


@dataclass(frozen=True)
class SubscriptionRow:
    """One subscription line: health colour, countdown, and what the renewer last did."""

    id: str
    mailbox: str
    folder: str
    health: str
    red: bool
    expiration: str
    expires_epoch: float
    countdown: str
    renewed_at: str
    last_error: str
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True)
class TenantRow:
    """One tenant's line: its subscriptions, its state as the renewer recorded it, and what last went wrong."""

    name: str
    subscriptions: int
    alarms: int
    state: str  # ok | consent_missing | throttled | error; "" when the renewer has recorded none
    since: str
    retry_at: str
    error: str  # the state's reason when not ok, else the last error of one of its subscriptions (redacted)

    @property
    def red(self) -> bool:
        """Whether the tenant needs an operator: a state other than ok, or a subscription alarm."""
        return self.state not in ("", "ok") or self.alarms > 0


@dataclass(frozen=True)
class FailedJob:
    """A job in a FailedJobRegistry, with the last line of its error (redacted)."""

    id: str
    queue: str
    function: str
    description: str
    ended_at: str
    error: str


@dataclass
class Status:
    """Everything on the page."""

    now: dt.datetime
    subscriptions: list[SubscriptionRow] = field(default_factory=list)
    resyncs: list[dict[str, str]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    fired: list[dict[str, Any]] = field(default_factory=list)
    rule_totals: list[tuple[str, int]] = field(default_factory=list)
    queues: list[dict[str, Any]] = field(default_factory=list)
    failed: list[FailedJob] = field(default_factory=list)
    dead_webhooks: int = 0
    total_subscriptions: int = 0
    tenants: list[TenantRow] = field(default_factory=list)

    alarms: int = 0  # subscriptions shown red

    @property
    def multi_tenant(self) -> bool:
        """More than one tenant: the page names each row's tenant."""
        return len(self.tenants) > 1

    @property
    def show_tenants(self) -> bool:
        """The per-tenant summary: with several tenants, or when the only one is not ok."""
        return self.multi_tenant or any(t.state not in ("", "ok") for t in self.tenants)


def _iso(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ") if moment else ""


def _epoch_iso(value: Any) -> str:
    try:
        return _iso(dt.datetime.fromtimestamp(float(value), dt.timezone.utc))
    except (TypeError, ValueError, OverflowError):
        return ""


def gather(r: redis.Redis, *, margin: dt.timedelta, now: dt.datetime | None = None) -> Status:
    """Read the whole status from Redis."""
    now = now or dt.datetime.now(dt.timezone.utc)
    status = Status(now=now)
    views = observe.subscriptions(r)
    for view in views:
        health = view.health(now, margin)
        expires = parse_time(view.expiration)
        status.subscriptions.append(SubscriptionRow(
            id=view.id, mailbox=view.mailbox, folder=view.folder, health=health, red=health in RED,
            expiration=_iso(expires), expires_epoch=expires.timestamp() if expires else 0.0,
            countdown=countdown(view.seconds_left(now)), renewed_at=view.renewed_at, last_error=redact(view.last_error),
            tenant=view.tenant))
    status.subscriptions.sort(key=lambda row: not row.red)  # alarms on top, otherwise by mailbox and folder
    status.total_subscriptions = len(status.subscriptions)
    status.alarms = sum(1 for row in status.subscriptions if row.red)
    status.tenants = _tenants(r, views, status.subscriptions)
    del status.subscriptions[SUBSCRIPTION_ROWS:]
    status.resyncs = _resyncs(r, {v.user_id.lower(): v.mailbox for v in views if v.user_id})
    status.notifications = _recent_notifications(r)
    status.fired = _fired(r)
    totals = {k.decode(): int(v) for k, v in r.hgetall(observe.RULE_STATS).items()}
    status.rule_totals = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    for queue in sorted(Queue.all(connection=r), key=lambda q: q.name):
        status.queues.append({"name": queue.name, **observe.queue_depths(queue)})
        status.failed.extend(_failed(r, queue))
    status.dead_webhooks = int(r.llen(observe.WEBHOOKS_FAILED))
    return status


def _tenants(r: redis.Redis, views: list[SubscriptionView], rows: list[SubscriptionRow]) -> list[TenantRow]:
    """Per tenant (from the registry and ``keys.TENANTS``): subscriptions, alarms, recorded state, last error."""
    names = observe.tenant_names(r, views)
    states = observe.tenant_states(r, names)
    by_tenant: dict[str, list[SubscriptionRow]] = {}
    for row in rows:
        by_tenant.setdefault(row.tenant, []).append(row)
    out = []
    for name in names:
        mine = by_tenant.get(name, [])
        recorded = states.get(name, observe.TenantState())
        errors = [row.last_error for row in sorted(mine, key=lambda row: not row.red) if row.last_error]
        error = recorded.reason if recorded.state not in ("", "ok") and recorded.reason else (errors[0] if errors else "")
        out.append(TenantRow(name=name, subscriptions=len(mine), alarms=sum(1 for row in mine if row.red),
                             state=recorded.state, since=recorded.at, retry_at=recorded.retry_at,
                             error=redact(error)[:300]))
    return out


def _resyncs(r: redis.Redis, mailboxes: dict[str, str]) -> list[dict[str, str]]:
    """Last delta sync per mailbox folder (``graphhook:delta:{user}:{folder}``)."""
    prefix = keys.delta("", "")[:-1]  # "graphhook:delta:"
    names = sorted(k.decode() for k in r.scan_iter(match=f"{prefix}*", count=500))
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.hmget(name, "lastSync", "resyncQueuedAt")
    rows = []
    for name, (last, queued) in zip(names, pipe.execute() if names else []):
        user, _, folder = name[len(prefix):].rpartition(":")
        rows.append({"mailbox": mailboxes.get(user.lower(), user), "folder": folder,
                     "last_sync": (last or b"").decode() or "never",
                     "queued": (queued or b"").decode()})
    return rows


def _recent_notifications(r: redis.Redis) -> list[dict[str, Any]]:
    rows = []
    for raw in r.lrange(observe.RECENT_NOTIFICATIONS, 0, RECENT_ROWS - 1):
        try:
            item = json.loads(raw)
        except ValueError:
            continue
        item["when"] = _epoch_iso(item.get("at"))
        rows.append(item)
    return rows


def _fired(r: redis.Redis) -> list[dict[str, Any]]:
    """The latest record-trigger events, newest first: when, mailbox, subject, sender, rules."""
    rows = []
    for raw in reversed(r.lrange(keys.EVENTS, -RECENT_ROWS, -1)):
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        email = event.get("email") or {}
        sender = email.get("from") or {}
        rows.append({"when": _epoch_iso(event.get("firedAt")), "mailbox": email.get("mailbox", ""),
                     "tenant": event.get("tenant") or "",
                     "subject": email.get("subject", ""), "sender": sender.get("address", ""),
                     "rules": event.get("rules") or [], "dry_run": event.get("dryRun") or []})
    return rows


def _failed(r: redis.Redis, queue: Queue) -> list[FailedJob]:
    ids = queue.failed_job_registry.get_job_ids(0, FAILED_ROWS - 1)
    out = []
    for job_id, job in zip(ids, jobformat.fetch_many(ids, r) if ids else []):
        if job is None:
            continue
        error = ""
        try:
            result = job.latest_result()
            error = (result.exc_string or "") if result is not None else ""
        except Exception:  # noqa: BLE001 — an unreadable result still lists the job
            error = ""
        last_line = next((line for line in reversed(error.strip().splitlines()) if line.strip()), "")
        try:
            function = job.func_name or ""
        except DeserializationError:  # not JSON (pickle form): listed, never unpickled (graphhook/core/jobformat.py)
            function = "(refused: data is not JSON)"
        out.append(FailedJob(id=job_id, queue=queue.name, function=function, description=job.description or "",
                             ended_at=_iso(job.ended_at.replace(tzinfo=job.ended_at.tzinfo or dt.timezone.utc))
                             if job.ended_at else "", error=redact(last_line)[:300]))
    return out
