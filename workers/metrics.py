"""Worker-side metrics: counted in memory, added to Redis after each job, exposed by the receiver's ``/metrics``.

RQ workers, their work horses and the renewer are separate processes — on
Heroku or Kubernetes separate machines — so they cannot share a
prometheus_client multiprocess directory with the web process. They share
Redis: each process buffers its counts here and :func:`flush` adds them to
Redis hashes in one pipelined round trip (after every job, see
:class:`MeteredWorker`; after every renewer pass; at least once a second while
metrics keep coming). :mod:`graphhook.core.observe` defines the metrics and turns the
hashes into Prometheus families at scrape time. A metric write never fails a
job: if Redis is unavailable the counts stay buffered for the next flush.

The instrumentation calls (one line each in the owners' modules):
:func:`graph_request` (``workers/graph/client.py``), :func:`token_request`
(``workers/graph/auth.py``), :func:`notification_handled` (``workers/jobs.py``),
:func:`triggers_fired` (``workers/triggers/dispatch.py``), :func:`webhook_result`
(``workers/triggers/webhooks.py``); job durations and failures come from :class:`MeteredWorker`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import defaultdict
from typing import Any, Iterable

import redis
from rq import SimpleWorker, Worker, get_current_job

from graphhook.core import observe
from graphhook.core.subhealth import RED, SubscriptionView
from workers.maintenance import OnScheduleMaintenance
from workers.scheduler import InThreadScheduler
from workers.shutdown import PromptShutdown

log = logging.getLogger("graphhook.metrics")
events = logging.getLogger("graphhook.notifications")

AUTO_FLUSH_SECONDS = 1.0  # a process that runs no jobs (renewer, CLI) still writes at least this often
RECENT = observe.RECENT_NOTIFICATIONS  # capped list of the latest handled notifications (status page)
RECENT_KEEP = 50
MAX_BUFFERED = 10_000  # histogram observations kept in memory between flushes
THROTTLE_STATUSES = frozenset({429, 503, 504})
NOTIFICATION_JOB = "workers.jobs.process_notifications"

_lock = threading.Lock()
_counts: dict[tuple[str, str], float] = defaultdict(float)
_observations: list[tuple[str, str, float]] = []
_recent: list[str] = []
_redis: redis.Redis | None = None
_last_flush = time.monotonic()


def use_redis(r: redis.Redis) -> None:
    """Where :func:`flush` writes when called without a client (set once per process)."""
    global _redis
    _redis = r


def inc(name: str, amount: float = 1.0, **labels: Any) -> None:
    """Add to a counter of :data:`graphhook.core.observe.SPECS`."""
    spec = observe.SPECS[name]
    with _lock:
        _counts[(name, observe.label_field(spec, labels))] += amount
    _maybe_flush()


def observe_seconds(name: str, seconds: float, **labels: Any) -> None:
    """Record one histogram observation."""
    spec = observe.SPECS[name]
    with _lock:
        _observations.append((name, observe.label_field(spec, labels), max(0.0, seconds)))
        del _observations[:-MAX_BUFFERED]  # a process that never flushes (one-off commands) stays bounded
    _maybe_flush()


def flush(r: redis.Redis | None = None) -> bool:
    """Add everything buffered to Redis in one round trip; False (and kept for next time) if Redis failed."""
    global _last_flush
    r = r or _redis
    if r is None:
        return False
    with _lock:
        counts, observations, recent = dict(_counts), list(_observations), list(_recent)
        _counts.clear()
        _observations.clear()
        _recent.clear()
        _last_flush = time.monotonic()
    if not (counts or observations or recent):
        return True
    try:
        pipe = r.pipeline(transaction=False)
        observe.write(pipe, counts, observations)
        if recent:
            pipe.lpush(RECENT, *reversed(recent))  # oldest first, so the newest ends up at the head
            pipe.ltrim(RECENT, 0, RECENT_KEEP - 1)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("metrics not written to Redis (kept for the next flush): %s", type(exc).__name__)
        with _lock:
            for k, v in counts.items():
                _counts[k] += v
            _observations[:0] = observations
            _recent[:0] = recent
        return False
    return True


def _maybe_flush() -> None:
    if _redis is not None and time.monotonic() - _last_flush > AUTO_FLUSH_SECONDS and get_current_job() is None:
        flush()


# --- the instrumentation calls ---------------------------------------------------------------

def graph_request(method: str, status: int | str) -> None:
    """One HTTP request sent to Graph and its status (``error`` when no answer came)."""
    inc("graphhook_graph_requests", method=method.upper(), status=status)
    if status in THROTTLE_STATUSES:
        inc("graphhook_graph_throttled", status=status)


def token_request(ok: bool) -> None:
    """One token request to the identity platform."""
    inc("graphhook_token_acquisitions", outcome="ok" if ok else "error")


def notification_handled(outcome: str, *, subscription_id: str = "", message_id: str = "",
                         change_type: str = "", notification_id: str = "", tenant: str = "") -> None:
    """Count one handled change notification and remember it for the status page's recent list.

    ``tenant``: the name of the subscription's tenant from the registry or configuration (a bounded label), "" if none.
    """
    inc("graphhook_notifications_processed", outcome=outcome, tenant=tenant)
    # One line per handled notification: the thread that ties receiver, job and message together.
    events.info("%s notification: %s", change_type or "change", outcome, extra={
        "notification_id": notification_id, "subscription_id": subscription_id, "message_id": message_id,
        "change_type": change_type, "tenant": tenant})
    entry = {"at": time.time(), "outcome": outcome, "subscriptionId": subscription_id, "changeType": change_type,
             "message": message_id[-16:], "notification": notification_id, "tenant": tenant}
    job = get_current_job()
    if job is not None:
        entry["job"] = job.id
    with _lock:
        _recent.insert(0, json.dumps(entry, separators=(",", ":")))
        del _recent[RECENT_KEEP:]


def triggers_fired(rules: Iterable[str], *, notified_at: float | None = None, tenant: str = "") -> None:
    """The record trigger and each matched rule fired in ``tenant``; observe end-to-end latency from the notification."""
    inc("graphhook_triggers_fired", rule="record", tenant=tenant)
    for rule in rules:
        inc("graphhook_triggers_fired", rule=rule, tenant=tenant)
    started = notified_at if notified_at is not None else _notified_at()
    if started is not None:
        observe_seconds("graphhook_notification_to_trigger_seconds", time.time() - started)


def _notified_at() -> float | None:
    """When the receiver accepted the notification: creation time of the running notification job."""
    job = get_current_job()
    if job is None or job.func_name != NOTIFICATION_JOB or job.created_at is None:
        return None
    created = job.created_at if job.created_at.tzinfo else job.created_at.replace(tzinfo=dt.timezone.utc)
    return created.timestamp()


def webhook_result(webhook: str, *, ok: bool, final: bool = False) -> None:
    """One outbound webhook delivery attempt."""
    if ok:
        inc("graphhook_webhook_deliveries", webhook=webhook)
    else:
        inc("graphhook_webhook_failures", webhook=webhook, final="true" if final else "false")


def alarm_expiring(r: redis.Redis, *, now: dt.datetime, margin: dt.timedelta) -> list[SubscriptionView]:
    """Log an error (and count an alarm) for each subscription close to expiry without a successful renewal."""
    alarms = []
    for view in observe.subscriptions(r):
        health = view.health(now, margin)
        if health in RED:
            alarms.append(view)
            inc("graphhook_subscription_alarms", mailbox=view.mailbox, folder=view.folder)
            log.error("subscription %s for %s/%s is %s: %s left, renewed at %s%s", view.id, view.mailbox, view.folder,
                      health, dt.timedelta(seconds=int(max(view.seconds_left(now), 0))), view.renewed_at or "never",
                      f"; last error: {view.last_error}" if view.last_error else "",
                      extra={"subscription_id": view.id, "mailbox": view.mailbox})
    flush(r)
    return alarms


# --- job durations and failures ---------------------------------------------------------------

class Metered:
    """Mixin for RQ workers: time each job, count its outcome, then flush this process's metrics."""

    def perform_job(self, job: Any, queue: Any, *args: Any, **kwargs: Any) -> bool:
        """RQ's perform_job, timed and counted; this process's metrics are flushed afterwards."""
        started = time.perf_counter()
        ok = super().perform_job(job, queue, *args, **kwargs)  # type: ignore[misc]
        function = job.func_name or "unknown"
        observe_seconds("graphhook_job_seconds", time.perf_counter() - started, function=function)
        if getattr(job, "_graphhook_deferred", False):  # rescheduled for a mailbox's Retry-After (concurrent.py)
            job._graphhook_deferred = False
            inc("graphhook_jobs", function=function, outcome="deferred")
        else:
            inc("graphhook_jobs", function=function, outcome="ok" if ok else "failed")
            if not ok:
                inc("graphhook_job_failures", function=function)
        flush(self.connection)  # type: ignore[attr-defined]
        return ok


class MeteredWorker(Metered, InThreadScheduler, PromptShutdown, OnScheduleMaintenance, Worker):
    """RQ's forking worker with job metrics (the work horse flushes before it exits), its scheduler in a thread,
    a prompt teardown and maintenance on schedule when idle."""


class MeteredSimpleWorker(Metered, InThreadScheduler, PromptShutdown, OnScheduleMaintenance, SimpleWorker):
    """RQ's non-forking worker with job metrics, its scheduler in a thread, a prompt teardown and maintenance on
    schedule when idle."""


def metered(worker_class: type) -> type:
    """The metered variant of ``Worker`` or ``SimpleWorker``."""
    return MeteredSimpleWorker if issubclass(worker_class, SimpleWorker) else MeteredWorker
