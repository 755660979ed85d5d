"""The renewer for many tenants: one reconcile per tenant per pass, in parallel, each paced on its own.

Every pass re-reads the configuration's tenants (adding or removing one needs no restart) and runs each
tenant's :class:`~workers.subscriptions.renewer.Renewer` in a bounded thread pool. Each tenant has its own
token, Graph client and :class:`~workers.graph.ratelimit.WriteLimiter`, because Graph counts subscription
writes per app *per tenant*: 100 tenants of 100 mailboxes are 100 short queues, not one long one.

A tenant that fails — its token refused (AADSTS700016 / 7000215 / 7000222), Graph refusing its token
(401 / 403), still throttled after the retry budget, or any other error — is recorded in
``graphhook.core.keys.tenant_state`` (:mod:`workers.subscriptions.tenant_state`) and retried on a later
pass with exponential back-off; the other tenants' passes go on untouched. Subscriptions of tenants no
longer configured are deleted with their tenant's token while it still works, else left to expire (at
most 7 days): either way they leave the registry, and those left are listed in ``keys.orphans(tenant)``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable

from graphhook.core import keys
from workers import metrics
from workers.graph.ratelimit import WRITE_LIMIT, WRITE_WINDOW, WriteLimiter
from workers.runtime import Context
from workers.subscriptions import operations, registry, tenant_state
from workers.subscriptions.registry import Record
from workers.subscriptions.renewer import DEFAULT_MARGIN, DEFAULT_RESYNC_EVERY, Loop, Renewer, Report, _utcnow
from workers.triggers.model import App, Tenant

log = logging.getLogger("graphhook.renewer")

PARALLEL = 8  # tenants reconciled at once: enough to overlap Graph's latency, few enough for one process
BACKOFF_FIRST = dt.timedelta(minutes=1)  # a failing tenant is tried again after this, doubling each time ...
BACKOFF_CAP = dt.timedelta(hours=1)  # ... up to this: a revoked consent is noticed within the hour it returns


@dataclass
class TenantsReport(Report):
    """One pass over every tenant: the summed counts, and each tenant's state after it."""

    tenants: dict[str, str] = field(default_factory=dict)
    orphaned: int = 0  # subscriptions of tenants no longer configured that could not be deleted


@dataclass
class _Slot:
    """What the renewer keeps about one tenant between passes."""

    tenant: Tenant
    limiter: WriteLimiter
    renewer: Renewer | None = None
    failures: int = 0
    retry_at: dt.datetime | None = None
    state: str = ""  # after the last pass


class Renewers(Loop):
    """Reconciles every configured tenant (``load()`` gives them, each pass); see the module docstring."""

    def __init__(self, ctx: Context, load: Callable[[], Iterable[Tenant]], *,
                 margin: dt.timedelta = DEFAULT_MARGIN, resync_every: dt.timedelta = DEFAULT_RESYNC_EVERY,
                 clock: Callable[[], dt.datetime] = _utcnow, sleep: Callable[[float], None] = time.sleep,
                 parallel: int = PARALLEL, write_limit: int = WRITE_LIMIT,
                 heartbeat: Callable[[], object] | None = None) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, got {parallel!r}")
        self.ctx, self.load = ctx, load
        self.margin, self.resync_every = margin, resync_every
        self.clock, self.sleep = clock, sleep
        self.parallel, self.write_limit = parallel, write_limit
        self.heartbeat = heartbeat or (lambda: None)
        self._slots: dict[str, _Slot] = {}
        self.reports: dict[str, Report] = {}  # the last pass, per tenant

    # --- one pass -----------------------------------------------------------------------------
    def reconcile(self) -> TenantsReport:
        """One pass: every configured tenant not backing off, in parallel; then the orphans."""
        now = self.clock()
        tenants = {t.name: t for t in self.load()}
        for name in [n for n, slot in self._slots.items()
                     if n not in tenants or _identity(tenants[n]) != _identity(slot.tenant)]:
            del self._slots[name]  # removed, or now another directory or app: start afresh
        records = list(registry.all_records(self.ctx.redis))
        by_tenant: dict[str, list[Record]] = defaultdict(list)
        for record in records:
            by_tenant[record.tenant].append(record)
        due = []
        for name, tenant in tenants.items():
            slot = self._slots.get(name)
            if slot is None:
                slot = self._slots[name] = _Slot(tenant, WriteLimiter(
                    self.write_limit, WRITE_WINDOW, clock=lambda: self.clock().timestamp(), sleep=self.sleep),
                    state=tenant_state.read(self.ctx.redis, name).get("state", ""))
            slot.tenant = tenant
            if slot.retry_at is not None and now < slot.retry_at:
                log.info("tenant %s is %s; next try at %s", name, slot.state, registry.format_time(slot.retry_at))
                continue
            due.append(name)
        gone = sorted(set(by_tenant) - set(tenants))

        total = TenantsReport()
        with ThreadPoolExecutor(max_workers=max(1, min(self.parallel, len(due) + len(gone))),
                                thread_name_prefix="renewer") as pool:
            passes = {name: pool.submit(self._one, self._slots[name], by_tenant.get(name, [])) for name in due}
            orphans = [pool.submit(self._orphans, name, by_tenant[name], tenants.values()) for name in gone]
            for name, future in passes.items():
                report = self.reports[name] = future.result()
                total.add(report, prefix=f"{name}: ")
            for future in orphans:
                deleted, left = future.result()
                total.deleted += deleted
                total.orphaned += left
        for name in tenants:
            total.tenants[name] = tenant_state.read(self.ctx.redis, name).get("state", "")
        log.info("reconcile of %d tenant(s), %d due: %s; orphaned %d", len(tenants), len(due), total, total.orphaned)
        metrics.alarm_expiring(self.ctx.redis, now=self.clock(), margin=self.margin)  # logs an error per red one
        return total

    def _one(self, slot: _Slot, records: list[Record]) -> Report:
        """One tenant's pass; never raises: a failure is recorded as the tenant's state."""
        name = slot.tenant.name
        try:
            if slot.renewer is None:
                slot.renewer = self._renewer(slot)
            slot.renewer.desired = sorted({(w.address, f) for w in slot.tenant.mailboxes for f in w.folders})
            # Back from consent_missing: Graph challenged its subscriptions meanwhile; renewing reauthorizes them.
            report = slot.renewer.reconcile(records, renew_all=slot.state == tenant_state.CONSENT_MISSING)
        except Exception as exc:  # the tenant's token, consent or Graph: recorded, retried later
            settings = slot.tenant.settings(self.ctx.base)
            state, reason = tenant_state.classify(exc, client_id=settings.client_id, tenant_id=settings.tenant_id)
            if tenant_state.is_refusal(exc):
                # Ask the identity platform next time: a cached token hides why (e.g. AADSTS700016).
                self.ctx.redis.delete(keys.token_cache(name))
                slot.renewer = None
            self._back_off(slot, state, reason)
            return Report(failed=1, throttled=int(state == tenant_state.THROTTLED), errors=[reason])
        if report.throttled:
            self._back_off(slot, tenant_state.THROTTLED,
                           f"{report.throttled} subscription write(s) still throttled after the retry budget")
        else:
            slot.failures, slot.retry_at, slot.state = 0, None, tenant_state.OK
            tenant_state.mark(self.ctx.redis, name, tenant_state.OK, now=self.clock())
        return report

    def _renewer(self, slot: _Slot) -> Renewer:
        renewer = Renewer(self._context(slot.tenant), (), margin=self.margin, resync_every=self.resync_every,
                          clock=self.clock, sleep=self.sleep, limiter=slot.limiter, heartbeat=lambda: self.heartbeat())
        renewer.alarms = False  # once per pass, for all tenants, in reconcile()
        return renewer

    def _context(self, tenant: Tenant) -> Context:
        # Always a context of its own, even for the environment's tenant: after a refusal it is dropped, and
        # with it MSAL's in-memory token, so the next try asks the token endpoint.
        return self.ctx.sibling(tenant.settings(self.ctx.base))

    def _back_off(self, slot: _Slot, state: str, reason: str) -> None:
        slot.failures += 1
        wait = min(BACKOFF_FIRST * 2 ** (slot.failures - 1), BACKOFF_CAP)
        slot.retry_at, slot.state = self.clock() + wait, state
        tenant_state.mark(self.ctx.redis, slot.tenant.name, state, reason, now=self.clock(), retry_at=slot.retry_at)

    # --- tenants no longer configured -----------------------------------------------------------
    def _orphans(self, name: str, records: list[Record], configured: Iterable[Tenant]) -> tuple[int, int]:
        """Delete a removed tenant's subscriptions with its token; those it cannot delete are left to expire.

        Either way they leave the registry, so the receiver refuses their notifications and nothing alarms
        about them; the ones left are listed in ``keys.orphans(name)`` until the last expires. Returns
        (deleted, left to expire)."""
        now = self.clock()
        live = [r for r in records if r.expires() > now]
        for record in records:
            if record.expires() <= now:
                registry.remove(self.ctx.redis, record.id)  # expired at Graph too: nothing left to delete
        deleted, left, reason = 0, [], ""
        ctx = self._former_context(name, live[0], configured) if live else None
        if live and ctx is None:
            reason = f"app {live[0].app_id} is no longer configured"
        limiter = WriteLimiter(self.write_limit, WRITE_WINDOW, clock=lambda: self.clock().timestamp(), sleep=self.sleep)
        for record in live:
            if ctx is not None and not left:  # after one refusal, the others would be refused too
                try:
                    limiter.acquire()
                    operations.delete(ctx.graph, ctx.redis, record.id)
                    deleted += 1
                    continue
                except Exception as exc:  # its token or consent is gone
                    reason = tenant_state.classify(exc, client_id=record.app_id, tenant_id=record.tenant_id)[1]
            left.append(record)
        if left:
            key = keys.orphans(name)
            with self.ctx.redis.pipeline() as pipe:
                pipe.hset(key, mapping={r.id: r.expiration for r in left})
                pipe.expireat(key, max(r.expires() for r in left))
                for record in left:
                    pipe.delete(keys.subscription(record.id))
                    pipe.srem(keys.SUBSCRIPTIONS, record.id)
                pipe.execute()
            log.warning("tenant %s is no longer configured and %d of its subscriptions could not be deleted (%s); they "
                        "are left to expire, the last at %s", name, len(left), reason,
                        max(r.expiration for r in left), extra={"tenant": name})
        tenant_state.forget(self.ctx.redis, name)
        self._slots.pop(name, None)
        return deleted, len(left)

    def _former_context(self, name: str, record: Record, configured: Iterable[Tenant]) -> Context | None:
        """A context for a removed tenant, from its record: the environment's app or an app another tenant uses."""
        base = self.ctx.base
        app: App | None = None
        if record.app_id and record.app_id.lower() != base.client_id.lower():
            app = next((t.app for t in configured if t.app and t.app.client_id == record.app_id.lower()), None)
            if app is None:
                return None
        tenant = Tenant(name, record.tenant_id or base.tenant_id, app)
        return self._context(tenant)


def _identity(tenant: Tenant) -> tuple[str, str]:
    return tenant.tenant_id, tenant.app.client_id if tenant.app else ""


def from_settings(ctx: Context, **kwargs: object) -> Renewers:
    """The renewer of every tenant of the configuration file, re-read each pass."""
    from workers.triggers.config import config_for
    from workers.triggers.tenants import tenants_of

    s = ctx.settings
    return Renewers(ctx, lambda: tenants_of(config_for(s.config_path), ctx.base),
                    margin=dt.timedelta(minutes=s.renew_margin_minutes),
                    resync_every=dt.timedelta(minutes=s.resync_every_minutes), **kwargs)  # type: ignore[arg-type]
