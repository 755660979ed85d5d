"""Metrics that live in Redis: what workers and the renewer count, and what ``/metrics`` reads at scrape time.

Why Redis and not prometheus_client's multiprocess directory: RQ workers and
the renewer are separate processes and, on Heroku or Kubernetes, separate
dynos or pods that share no filesystem with the web process — but they all
share Redis. So a worker adds its counts to Redis hashes (buffered in memory
and written in one pipelined round trip after each job, see
:mod:`workers.metrics`), and the receiver's ``/metrics`` turns those hashes into
Prometheus counters and histograms. Values survive worker restarts and
scaling; any web process (or gunicorn worker) exposes the same totals.

Also read at scrape time, straight from Redis: RQ queue depths, the
registered subscriptions' health (:mod:`graphhook.core.subhealth`), counted per
tenant too, and each tenant's state (``keys.tenant_state``, written by the renewer).
Tenant names come from the registry and the renewer, never from a notification,
so the ``tenant`` label is bounded by the configuration.

Mailbox addresses and subscription ids are not in the default exposition: a
scrape shows subscriptions counted by health and the soonest expiry, and
counters labelled by mailbox are summed over it. ``detail=True``
(``GRAPHHOOK_METRICS_SUBSCRIPTION_DETAIL``) brings back one series per
subscription for private deployments; at 10,000 subscriptions that is ~1.4 MB
per scrape (docs/observability.md).

Layout: hash ``graphhook:metrics:<name>``; a counter's field is its label
values joined by ``\\x1f``; a histogram's fields are ``<labels>\\x1e<le>``
(non-cumulative bucket counts), ``<labels>\\x1esum`` and ``<labels>\\x1ecount``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from graphhook.core import keys
from graphhook.core.subhealth import HEALTHS, SubscriptionView

log = logging.getLogger("graphhook.metrics")

PREFIX = f"{keys.PREFIX}:metrics:"
RECENT_NOTIFICATIONS = f"{keys.PREFIX}:recent:notifications"  # capped JSON list, newest first (workers write)
RULE_STATS = f"{keys.PREFIX}:rules:stats"  # hash rule → matches (written by workers/triggers/engine.py as RULE_STATS)
WEBHOOKS_FAILED = f"{keys.PREFIX}:webhooks:failed"  # dead letters (workers/triggers/webhooks.py FAILED)
LABEL_SEP, PART_SEP = "\x1f", "\x1e"
TENANT_STATES = ("ok", "consent_missing", "throttled", "error")  # keys.tenant_state's ``state`` (the renewer writes it)
# Seconds: jobs, Graph round trips and notification-to-trigger latency are all in this range.
SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class Spec:
    """One Redis-backed metric: kind (counter | histogram), help text, label names, buckets."""

    kind: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = SECONDS_BUCKETS
    private: tuple[str, ...] = ()  # labels naming mailboxes: summed away unless subscription detail is on


SPECS: dict[str, Spec] = {
    "graphhook_jobs": Spec("counter", "RQ job runs ended, by function and outcome (ok | failed | deferred: rescheduled "
                           "for a mailbox's Retry-After)", ("function", "outcome")),
    "graphhook_job_failures": Spec("counter", "RQ job runs that raised (each retry counts), by function", ("function",)),
    "graphhook_job_seconds": Spec("histogram", "Time an RQ job ran, by function", ("function",)),
    "graphhook_notifications_processed": Spec(
        "counter", "Change notifications handled by workers, by outcome (processed | duplicates | gone | updated | deleted "
        "| refused) and tenant", ("outcome", "tenant")),
    "graphhook_graph_requests": Spec("counter", "HTTP requests sent to Microsoft Graph, by method and status "
                                     "(error: no answer)", ("method", "status")),
    "graphhook_graph_throttled": Spec("counter", "Graph answers 429/503/504 (throttling), by status", ("status",)),
    "graphhook_token_acquisitions": Spec("counter", "Tokens requested from the identity platform, by outcome",
                                         ("outcome",)),
    "graphhook_triggers_fired": Spec("counter", "Triggers fired, by rule (record: the built-in record trigger) "
                                     "and tenant", ("rule", "tenant")),
    "graphhook_webhook_deliveries": Spec("counter", "Outbound webhook deliveries that succeeded, by webhook", ("webhook",)),
    "graphhook_webhook_failures": Spec("counter", "Outbound webhook delivery attempts that failed, by webhook and "
                                       "whether it was the last (final: kept for replay)", ("webhook", "final")),
    "graphhook_notification_to_trigger_seconds": Spec(
        "histogram", "End-to-end latency: notification accepted by the receiver to its triggers fired"),
    "graphhook_subscription_alarms": Spec("counter", "Renewer passes that found a subscription close to expiry "
                                          "without a successful renewal", ("mailbox", "folder"),
                                          private=("mailbox", "folder")),
}


def key(name: str) -> str:
    """The Redis hash of one metric."""
    return f"{PREFIX}{name}"


def label_field(spec: Spec, labels: Mapping[str, str]) -> str:
    """The hash field for a label set (all of the spec's labels, in order)."""
    return LABEL_SEP.join(str(labels.get(n, "")) for n in spec.labels)


def bucket_for(spec: Spec, value: float) -> str:
    """The (non-cumulative) bucket a histogram observation falls in."""
    for bound in spec.buckets:
        if value <= bound:
            return repr(float(bound))
    return "+Inf"


def write(pipe: "redis.client.Pipeline", counts: Mapping[tuple[str, str], float],
          observations: Iterable[tuple[str, str, float]]) -> None:
    """Queue increments (``{(name, field): amount}``) and histogram observations on a pipeline."""
    for (name, field), amount in counts.items():
        pipe.hincrbyfloat(key(name), field, amount)
    for name, field, value in observations:
        spec = SPECS[name]
        pipe.hincrby(key(name), f"{field}{PART_SEP}{bucket_for(spec, value)}", 1)
        pipe.hincrbyfloat(key(name), f"{field}{PART_SEP}sum", value)
        pipe.hincrby(key(name), f"{field}{PART_SEP}count", 1)


def _labels(spec: Spec, field: str) -> list[str]:
    """A field's label values; labels added to a spec since the field was written read as ""."""
    values = field.split(LABEL_SEP) if spec.labels else []
    if len(values) < len(spec.labels):  # e.g. counts from before the tenant label: no tenant, as for an unknown one
        values += [""] * (len(spec.labels) - len(values))
    return values if len(values) == len(spec.labels) else []


class RedisCollector(Collector):
    """Scrape-time collector: worker metrics, queue depths and subscription expiry, all from Redis."""

    def __init__(self, r: redis.Redis, *, margin: dt.timedelta,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
                 detail: bool = False) -> None:
        self._redis = r
        self._margin = margin
        self._clock = clock
        self._detail = detail  # per-subscription series, mailbox labels (private deployments only)

    def collect(self) -> Iterator[object]:
        """Families for worker metrics, queue depths and subscriptions; none from Redis if it is down."""
        try:
            yield from self._worker_metrics()
            yield from self._queues()
            yield from self._subscriptions()
        except redis.RedisError as exc:  # /metrics still shows the web process's own metrics
            log.warning("metrics from Redis unavailable: %s", type(exc).__name__)

    def _worker_metrics(self) -> Iterator[object]:
        names = list(SPECS)
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(key(name))
        for name, raw in zip(names, pipe.execute()):
            spec = SPECS[name]
            data = {k.decode(): float(v) for k, v in raw.items()}
            if spec.kind == "counter":
                yield self._counter(name, spec, data)
            else:
                yield self._histogram(name, spec, data)

    def _counter(self, name: str, spec: Spec, data: Mapping[str, float]) -> CounterMetricFamily:
        """A counter family; without detail, labels naming mailboxes are summed away."""
        shown = tuple(n for n in spec.labels if self._detail or n not in spec.private)
        sums: dict[tuple[str, ...], float] = {}
        for field, value in data.items():
            values = _labels(spec, field)
            if len(values) == len(spec.labels):
                kept = tuple(v for n, v in zip(spec.labels, values) if n in shown)
                sums[kept] = sums.get(kept, 0.0) + value
        family = CounterMetricFamily(name, spec.help, labels=shown)
        for values, value in sorted(sums.items()):
            family.add_metric(list(values), value)
        return family

    @staticmethod
    def _histogram(name: str, spec: Spec, data: Mapping[str, float]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, spec.help, labels=spec.labels)
        series = sorted({f.split(PART_SEP)[0] for f in data})
        for field in series:
            running, buckets = 0.0, []
            for bound in [repr(float(b)) for b in spec.buckets] + ["+Inf"]:
                running += data.get(f"{field}{PART_SEP}{bound}", 0.0)
                buckets.append((bound, running))
            values = _labels(spec, field) if spec.labels else []
            family.add_metric(values, buckets, data.get(f"{field}{PART_SEP}sum", 0.0))
        return family

    def _queues(self) -> Iterator[object]:
        from rq import Queue

        family = GaugeMetricFamily("graphhook_queue_jobs", "RQ jobs by queue and state, read at scrape time",
                                   labels=("queue", "state"))
        for queue in Queue.all(connection=self._redis):
            for state, count in queue_depths(queue).items():
                family.add_metric([queue.name, state], count)
        yield family
        millis = self._redis.time()
        throttled = self._redis.zcount(keys.MAILBOXES_THROTTLED, f"({millis[0] * 1000 + millis[1] // 1000}", "+inf")
        yield GaugeMetricFamily("graphhook_mailboxes_throttled", "Mailboxes inside a Retry-After Graph gave them: "
                                "workers defer their jobs until it has passed (read at scrape time)", value=throttled)

    def _subscriptions(self) -> Iterator[object]:
        now = self._clock()
        expiry = GaugeMetricFamily("graphhook_subscription_expiry_seconds",
                                   "Seconds until a subscription expires, with its health (at_risk, renew_failed, "
                                   "removed and expired are alarms)", labels=("subscription", "mailbox", "folder", "health"))
        by_health = dict.fromkeys(HEALTHS, 0)
        soonest: float | None = None
        views = subscriptions(self._redis)
        for view in views:
            health = view.health(now, self._margin)
            by_health[health] += 1
            left = view.seconds_left(now)
            left = left if left != float("-inf") else -1.0
            soonest = left if soonest is None else min(soonest, left)
            if self._detail:
                expiry.add_metric([view.id, view.mailbox, view.folder, health], left)
        if self._detail:
            yield expiry
        count = GaugeMetricFamily("graphhook_subscriptions", "Registered subscriptions by health", labels=("health",))
        for health, n in by_health.items():
            count.add_metric([health], n)
        yield count
        yield from self._tenants(views, now)
        if soonest is not None:
            yield GaugeMetricFamily("graphhook_subscription_soonest_expiry_seconds",
                                    "Seconds until the first registered subscription expires (-1: one has expired)",
                                    value=soonest)


    def _tenants(self, views: list[SubscriptionView], now: dt.datetime) -> Iterator[object]:
        """Subscriptions per tenant and health, and each tenant's state (1 for the one it is in)."""
        names = tenant_names(self._redis, views)
        per_tenant = GaugeMetricFamily("graphhook_tenant_subscriptions", "Registered subscriptions by tenant and health",
                                       labels=("tenant", "health"))
        counts = {(name, health): 0 for name in names for health in HEALTHS}
        for view in views:
            counts[(view.tenant, view.health(now, self._margin))] += 1
        for (name, health), n in counts.items():
            per_tenant.add_metric([name, health], n)
        yield per_tenant
        state = GaugeMetricFamily("graphhook_tenant_state", "Each tenant's state as the renewer last recorded it: 1 for "
                                  "the state it is in (ok, consent_missing, throttled, error)", labels=("tenant", "state"))
        for name, recorded in tenant_states(self._redis, names).items():
            if recorded.state in TENANT_STATES:
                for candidate in TENANT_STATES:
                    state.add_metric([name, candidate], 1.0 if candidate == recorded.state else 0.0)
        yield state


@dataclass(frozen=True)
class TenantState:
    """A tenant's state as recorded in ``keys.tenant_state`` ("" everywhere when never recorded)."""

    state: str = ""
    reason: str = ""
    at: str = ""
    retry_at: str = ""


def tenant_names(r: redis.Redis, views: Iterable[SubscriptionView]) -> list[str]:
    """Tenants to report: those of registered subscriptions and those whose state is kept (``keys.TENANTS``)."""
    names = {view.tenant for view in views} | {n.decode() for n in r.smembers(keys.TENANTS)}
    return sorted(names)


def tenant_states(r: redis.Redis, names: Iterable[str]) -> dict[str, TenantState]:
    """The recorded state of each tenant that has one (one pipelined round trip)."""
    names = list(names)
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.hmget(keys.tenant_state(name), "state", "reason", "at", "retryAt")
    out = {}
    for name, values in zip(names, pipe.execute() if names else []):
        state, reason, at, retry_at = ((v or b"").decode(errors="replace") for v in values)
        if state:
            out[name] = TenantState(state, reason, at, retry_at)
    return out


def queue_depths(queue: Any) -> dict[str, int]:
    """Jobs of one ``rq.Queue`` by state: queued, started, scheduled, deferred, failed, finished."""
    return {"queued": queue.count, "started": queue.started_job_registry.count,
            "scheduled": queue.scheduled_job_registry.count, "deferred": queue.deferred_job_registry.count,
            "failed": queue.failed_job_registry.count, "finished": queue.finished_job_registry.count}


def subscriptions(r: redis.Redis) -> list[SubscriptionView]:
    """Every registered subscription (read-only; pipelined), ordered by mailbox and folder."""
    ids = sorted(i.decode() for i in r.smembers(keys.SUBSCRIPTIONS))
    pipe = r.pipeline(transaction=False)
    for sid in ids:
        pipe.hgetall(keys.subscription(sid))
    views = [SubscriptionView.from_redis(values) for values in pipe.execute()] if ids else []
    return sorted((v for v in views if v is not None), key=lambda v: (v.mailbox.lower(), v.folder.lower(), v.id))
