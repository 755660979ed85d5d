"""The renewer: keep the desired subscriptions alive, whatever happens at Graph.

Desired state is the configuration's mailbox folders; actual state is Graph's
subscription list and our registry. Each :meth:`Renewer.reconcile` pass

- creates what is missing (then resyncs the folder, so mail that arrived while
  nothing was subscribed is still processed),
- recreates subscriptions Graph no longer has (404 / absent from the list),
- renews those that expire within the margin, asking for the documented maximum,
- deletes subscriptions we created and no longer want (orphans),
- and enqueues a safety resync of folders not synced for ``resync_every``.

Subscription writes go through a :class:`~workers.graph.ratelimit.WriteLimiter`, so a
sweep of 10,000 renewals stays inside Graph's 1,000-writes-per-20-s limit.
Time is injected (``clock``/``sleep``), so tests run days of life without sleeping.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable

import redis

from graphhook.core import jobformat, keys
from graphhook.core.errors import GraphError, ThrottledError
from workers import metrics
from workers.graph.ratelimit import WriteLimiter
from workers.runtime import Context
from workers.subscriptions import operations, registry
from workers.subscriptions.leader import LeaderLock
from workers.subscriptions.lifecycle import replace_subscription
from workers.subscriptions.registry import Record
from workers.subscriptions.resync import resync_folder

log = logging.getLogger("graphhook.renewer")

DEFAULT_MARGIN = dt.timedelta(hours=24)  # renew when less than this is left (lifetime is 7 days)
DEFAULT_INTERVAL = 60.0  # seconds between passes
DEFAULT_RESYNC_EVERY = dt.timedelta(minutes=30)  # safety resync covers silent outages at Microsoft
ALIVE_SPACING = dt.timedelta(seconds=5)  # within a sweep, refresh the liveness record at most this often
RESYNC_JOB = "workers.jobs.resync_folder"


@dataclass
class Report:
    """What one reconcile pass did."""

    created: int = 0
    renewed: int = 0
    recreated: int = 0
    deleted: int = 0
    resyncs: int = 0
    failed: int = 0
    throttled: int = 0  # of the failed: still 429/503/504 after the Graph client's retry budget
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"created {self.created}, renewed {self.renewed}, recreated {self.recreated}, "
                f"deleted {self.deleted}, resyncs {self.resyncs}, failed {self.failed}")

    def add(self, other: "Report", prefix: str = "") -> None:
        """Add ``other``'s counts and errors (prefixed, e.g. with its tenant) to this one."""
        for name in ("created", "renewed", "recreated", "deleted", "resyncs", "failed", "throttled"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(f"{prefix}{e}" for e in other.errors)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Loop:
    """The renewer process: a pass every ``interval`` while holding the leader lock (:meth:`run`).

    Subclasses give ``ctx``, ``clock``, ``reconcile()`` and call ``self.heartbeat()`` during long passes.
    """

    ctx: Context
    clock: Callable[[], dt.datetime]
    heartbeat: Callable[[], object]
    _alive_at: dt.datetime | None = None

    def reconcile(self) -> object:
        raise NotImplementedError

    def run(self, *, once: bool = False, interval: float = DEFAULT_INTERVAL,
            stop: threading.Event | None = None, lock: LeaderLock | None = None) -> None:
        """Reconcile every ``interval`` seconds while holding the leader lock; ``once`` for a single pass."""
        stop = stop or threading.Event()
        ttl = max(3 * interval, 30)
        lock = lock or LeaderLock(self.ctx.redis, keys.RENEWER_LOCK, ttl=ttl)

        def heartbeat() -> None:  # long sweeps keep extending the lock, and keep the liveness record fresh
            self._alive(ttl, unless_within=ALIVE_SPACING)
            lock.acquire()

        self.heartbeat = heartbeat
        while not stop.is_set():
            self._alive(ttl)
            if lock.acquire():
                try:
                    self.reconcile()
                except Exception:  # keep the process alive; the next pass retries
                    log.exception("reconcile pass failed")
            else:
                log.debug("another renewer (%s) is active", lock.holder())
            if once:
                break
            stop.wait(interval)
        lock.release()  # stopping (or --once done): a standby, or the next command, need not wait for it to lapse

    def _alive(self, ttl: float, *, unless_within: dt.timedelta | None = None) -> None:
        """Record that this process still loops, leader or standby: ``graphhook probe renewer`` reads it.

        ``unless_within``: skip the write if the last one is that recent (a sweep calls this per subscription).
        """
        now = self.clock()
        if unless_within is not None and self._alive_at is not None and now - self._alive_at < unless_within:
            return
        self._alive_at = now
        key = keys.renewer_alive(socket.gethostname())
        try:
            with self.ctx.redis.pipeline() as pipe:
                pipe.hset(key, mapping={"pid": os.getpid(), "at": registry.format_time(now)})
                pipe.expire(key, int(ttl))
                pipe.execute()
        except redis.RedisError as exc:  # the probe then fails, which is the truth; the loop goes on
            log.warning("could not record the renewer's liveness: %s", exc)


class Renewer(Loop):
    """Reconciles one tenant's desired mailbox folders with Graph; see the module docstring."""

    def __init__(self, ctx: Context, desired: Iterable[tuple[str, str]], *,
                 margin: dt.timedelta = DEFAULT_MARGIN, resync_every: dt.timedelta = DEFAULT_RESYNC_EVERY,
                 clock: Callable[[], dt.datetime] = _utcnow, sleep: Callable[[float], None] = time.sleep,
                 limiter: WriteLimiter | None = None, heartbeat: Callable[[], object] | None = None) -> None:
        self.ctx = ctx
        self.desired = sorted({(m.strip(), f.strip()) for m, f in desired})
        self.margin = margin
        self.resync_every = resync_every
        self.clock = clock
        self.sleep = sleep
        self.limiter = limiter or WriteLimiter(clock=lambda: clock().timestamp(), sleep=sleep)
        self.heartbeat = heartbeat or (lambda: None)
        self._user_ids: dict[str, str] = {}
        self._alive_at: dt.datetime | None = None
        self.alarms = True  # log the red subscriptions after the pass (the multi-tenant renewer does it once for all)

    # --- one pass ------------------------------------------------------------------------
    def reconcile(self, records: Iterable[Record] | None = None, *, renew_all: bool = False) -> Report:
        """One pass over desired and actual state; ``records``: the registry's, if already read; ``renew_all``:
        renew every live subscription, due or not, and resync every folder (a tenant whose consent is back:
        renewing reauthorizes, and the resync finds the mail Graph did not notify meanwhile)."""
        report = Report()
        ours_url = f"{self.ctx.settings.public_url}/notifications"
        at_graph = {s["id"]: s for s in self.ctx.graph.paged("subscriptions")}
        records = [r for r in (registry.all_records(self.ctx.redis) if records is None else records)
                   if r.tenant == self.ctx.tenant]  # this tenant's
        by_key: dict[tuple[str, str], list[Record]] = defaultdict(list)
        for record in records:
            by_key[record.key].append(record)
        wanted = {(m.lower(), f.lower()): (m, f) for m, f in self.desired}
        due: list[Record] = []

        for key, (mailbox, folder) in wanted.items():
            self.heartbeat()
            candidates = by_key.get(key, [])
            if not candidates:
                self._write(report, "created", lambda m=mailbox, f=folder: self._create(m, f))
                continue
            newest_first = sorted(candidates, key=lambda r: r.expiration, reverse=True)
            live = [r for r in newest_first if r.id in at_graph]
            dead = [r for r in newest_first if r.id not in at_graph]
            if not live:  # Graph no longer has it (removed, expired, deleted): recreate and resync the gap
                for stale in dead[1:]:
                    registry.remove(self.ctx.redis, stale.id)
                self._write(report, "recreated", lambda d=dead[0]: self._recreate(d))
                continue
            for stale in dead:
                registry.remove(self.ctx.redis, stale.id)
            for extra in live[1:]:  # two subscriptions for one folder: keep the longest-lived
                self._write(report, "deleted", lambda e=extra: operations.delete(self.ctx.graph, self.ctx.redis, e.id))
            current = live[0]
            # A rich subscription lives one day: renew it at half-life even if the margin is longer. One whose
            # last renewal or reauthorization failed (e.g. consent was missing) is renewed now: that reauthorizes it.
            if (renew_all or current.state != "active"
                    or current.expires() - self.clock() <= min(self.margin, operations.lifetime_of(current) / 2)):
                due.append(current)
            report.resyncs += self._maybe_resync(current, now=renew_all)
        self._renew_due(report, due)

        for record in records:  # registered but no longer wanted
            if record.key not in wanted:
                self._write(report, "deleted", lambda r=record: operations.delete(self.ctx.graph, self.ctx.redis, r.id))
        known = {r.id for r in records}
        for sid, sub in at_graph.items():  # ours at Graph (same notification URL) but not in the registry
            # Looked up again: ``records`` may have been read before a lifecycle job registered a replacement.
            if (sid not in known and sub.get("notificationUrl") == ours_url
                    and registry.load(self.ctx.redis, sid) is None):
                self._write(report, "deleted", lambda s=sid: operations.delete(self.ctx.graph, self.ctx.redis, s))
        log.info("reconcile %s: %s", self.ctx.tenant, report)
        if self.alarms:
            metrics.alarm_expiring(self.ctx.redis, now=self.clock(), margin=self.margin)  # logs an error per red one
        return report

    def _write(self, report: Report, counter: str, operation: Callable[[], object]) -> None:
        self.limiter.acquire()
        try:
            operation()
        except GraphError as exc:
            report.failed += 1
            report.throttled += isinstance(exc, ThrottledError)
            report.errors.append(str(exc))
            log.error("subscription %s failed: %s", counter, exc)
            return
        setattr(report, counter, getattr(report, counter) + 1)

    def _user_id(self, mailbox: str) -> str:
        if mailbox not in self._user_ids:
            self._user_ids[mailbox] = operations.user_id_of(self.ctx.graph, mailbox)
        return self._user_ids[mailbox]

    def _create(self, mailbox: str, folder: str) -> None:
        user_id = self._user_id(mailbox)
        record = operations.create(self.ctx.graph, self.ctx.redis, self.ctx.settings, mailbox, folder,
                                      now=self.clock(), user_id=user_id)
        # Baseline on first sight; if we synced this folder before (downtime), this covers the gap.
        resync_folder(self.ctx, mailbox, folder, user_id, subscription_id=record.id, now=self.clock())

    def _recreate(self, old: Record) -> None:
        new = replace_subscription(self.ctx, old)
        resync_folder(self.ctx, new.mailbox, new.folder, new.user_id, subscription_id=new.id, now=self.clock())

    def _renew_due(self, report: Report, due: list[Record]) -> None:
        """Renew in ``$batch`` round trips of 20; recreate what Graph no longer has."""
        for start in range(0, len(due), 200):
            self.heartbeat()
            renewed, missing, failed = operations.renew_many(
                self.ctx.graph, self.ctx.redis, due[start:start + 200], now=self.clock(),
                before_each=self.limiter.acquire)
            report.renewed += len(renewed)
            for record, reason in failed:
                report.failed += 1
                report.throttled += any(f"→ {status} " in reason for status in (429, 503, 504))
                report.errors.append(reason)
                log.error("renewal of %s failed: %s", record.id, reason)
            for record in missing:
                self._write(report, "recreated", lambda m=record: self._recreate(m))

    def _maybe_resync(self, record: Record, *, now: bool = False) -> int:
        """Enqueue a safety resync of ``record``'s folder when due (``now``: at once, e.g. after a consent gap)."""
        state = self.ctx.redis.hmget(keys.delta(record.user_id, record.folder), "lastSync", "resyncQueuedAt")
        stamps = [registry.parse_time(v.decode()) for v in state if v]
        if not now and stamps and self.clock() - max(stamps) < self.resync_every:
            return 0
        jobformat.queue(self.ctx.settings.queue_name, self.ctx.redis).enqueue(
            RESYNC_JOB, record.mailbox, record.folder, record.user_id, record.id, record.tenant)
        # Remember the enqueue (not as lastSync, which bounds what the resync looks at) so that
        # later passes do not enqueue it again while the job waits in the queue.
        self.ctx.redis.hset(keys.delta(record.user_id, record.folder), "resyncQueuedAt",
                            registry.format_time(self.clock()))
        return 1
