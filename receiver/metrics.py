"""Prometheus metrics, correct under gunicorn's several worker processes.

Without ``PROMETHEUS_MULTIPROC_DIR`` each :class:`Metrics` has its own registry
(several apps can live in one test process). With it, prometheus_client keeps
every process's values in memory-mapped files in that directory and
:func:`exposition` adds them up, so ``/metrics`` is right whichever gunicorn
worker answers. That directory must be empty when the server starts:
``receiver/gunicorn_conf.py`` wipes it (``gunicorn -c python:receiver.gunicorn_conf``).

Where it is served: on a private listener (:func:`serve_private`, started in the
gunicorn master by ``receiver/gunicorn_conf.py`` on ``GRAPHHOOK_METRICS_BIND:GRAPHHOOK_METRICS_PORT``,
loopback by default), so the internet that reaches the receiver's port cannot
read it and scrapes take no slot from Graph's POSTs. The public port answers
``GET /metrics`` only with the status credentials (:mod:`receiver.status`), for
platforms with one routed port (Heroku).

To add metrics (e.g. worker-side ones), create them with ``registry=`` a private
:class:`CollectorRegistry` in that process, as here; any process that writes to
the same ``PROMETHEUS_MULTIPROC_DIR`` shows up in the receiver's ``/metrics``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from wsgiref.simple_server import WSGIServer

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from graphhook.core.observe import RedisCollector
from graphhook.core.settings import Settings

log = logging.getLogger("graphhook.metrics")

# Graph counts an answer above 2.9 s as slow (graph-protocol.md §2); buckets resolve well below that.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.9, 5.0)


def multiprocess_dir() -> str:
    """The multiprocess directory prometheus_client itself reads, or "" in single-process mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "") or os.environ.get("prometheus_multiproc_dir", "")


def exposition(registry: CollectorRegistry, extra: tuple[Collector, ...] = ()) -> tuple[bytes, str]:
    """Text exposition: all processes' values in multiprocess mode, else this registry's; plus ``extra`` collectors."""
    if multiprocess_dir():
        merged = CollectorRegistry()
        MultiProcessCollector(merged)
        for collector in extra:
            merged.register(collector)
        return generate_latest(merged), CONTENT_TYPE_LATEST
    return generate_latest(registry), CONTENT_TYPE_LATEST


class Metrics:
    """Intake counters and the intake latency histogram exposed at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._extra: tuple[Collector, ...] = ()
        self._received = Counter("graphhook_notifications_received", "Notifications in POST bodies, before checks",
                                 registry=self.registry)
        # ``tenant``: the name the registry recorded for the notification's subscription (bounded by the
        # configuration, never the notification's claim); "" when the subscription is unknown or the POST unread.
        self._accepted = Counter("graphhook_notifications_accepted", "Notifications persisted on Redis, by kind "
                                 "and tenant", ["kind", "tenant"], registry=self.registry)
        self._rejected = Counter("graphhook_notifications_rejected", "Notifications or POSTs rejected, by reason "
                                 "and tenant", ["reason", "tenant"], registry=self.registry)
        self._handshakes = Counter("graphhook_validation_handshakes", "Validation handshakes answered",
                                   registry=self.registry)
        self._unavailable = Counter("graphhook_intake_unavailable", "POSTs answered 503 (Redis or signing keys failed)",
                                    ["cause"], registry=self.registry)
        self._latency = Histogram("graphhook_intake_seconds", "Time to check and persist a notification POST",
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        # Children bound once: .labels() per POST costs a lock and a lookup on the hot path.
        self._accepted_by: dict[tuple[str, str], Counter] = {}

    def received(self, n: int) -> None:
        """Count notifications seen in a POST body."""
        self._received.inc(n)

    def accepted(self, kind: str, n: int = 1, *, tenant: str = "") -> None:
        """Count notifications persisted (kind: change or lifecycle) of one tenant."""
        if n:
            child = self._accepted_by.get((kind, tenant))
            if child is None:
                child = self._accepted_by.setdefault((kind, tenant), self._accepted.labels(kind, tenant))
            child.inc(n)

    def rejected(self, reason: str, n: int = 1, *, tenant: str = "") -> None:
        """Count rejections under a short reason label (and the subscription's tenant, when known)."""
        if n:
            self._rejected.labels(reason, tenant).inc(n)

    def handshake(self) -> None:
        """Count an answered validation handshake."""
        self._handshakes.inc()

    def unavailable(self, cause: str) -> None:
        """Count a 503 answer (cause: redis or signing_keys)."""
        self._unavailable.labels(cause).inc()

    def observe(self, seconds: float) -> None:
        """Record the time one notification POST took."""
        self._latency.observe(seconds)

    def add_collector(self, collector: Collector) -> None:
        """Also expose a scrape-time collector (e.g. :class:`graphhook.core.observe.RedisCollector`: worker metrics)."""
        self.registry.register(collector)
        self._extra += (collector,)

    def render(self) -> tuple[bytes, str]:
        """Body and content type for ``/metrics``."""
        return exposition(self.registry, self._extra)


def redis_collector(settings: Settings, r: redis.Redis) -> RedisCollector:
    """The scrape-time collector of worker, queue and subscription metrics, as the settings ask."""
    return RedisCollector(r, margin=dt.timedelta(minutes=settings.renew_margin_minutes),
                          detail=settings.metrics_subscription_detail)


def private_registry(settings: Settings, r: redis.Redis) -> CollectorRegistry:
    """What the private listener exposes: every gunicorn worker's intake metrics (multiprocess files) and Redis's."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        MultiProcessCollector(registry)
    registry.register(redis_collector(settings, r))
    return registry


def serve_private(settings: Settings, registry: CollectorRegistry) -> tuple[WSGIServer, threading.Thread] | None:
    """Serve ``registry`` on ``GRAPHHOOK_METRICS_BIND:GRAPHHOOK_METRICS_PORT`` in a daemon thread; None when off or taken.

    prometheus_client's own threaded server (https://prometheus.github.io/client_python/exporting/http/);
    a port already taken is logged, not fatal: the receiver must keep answering Graph.
    """
    if not settings.metrics_port:
        return None
    try:
        server = start_http_server(settings.metrics_port, addr=settings.metrics_bind, registry=registry)
    except OSError as exc:
        log.error("private metrics listener not started on %s:%d: %s", settings.metrics_bind, settings.metrics_port,
                  exc.strerror or type(exc).__name__)
        return None
    log.info("metrics on http://%s:%d/metrics", settings.metrics_bind, settings.metrics_port)
    return server
