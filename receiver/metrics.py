"""Prometheus metrics of the web process, on a registry per app (several apps can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    """Counters and the intake latency histogram exposed at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._received = Counter("graphhook_notifications_accepted", "Notifications accepted and enqueued",
                                 registry=self.registry)
        self._rejected = Counter("graphhook_notifications_rejected", "Notifications rejected, by reason",
                                 ["reason"], registry=self.registry)
        self._handshakes = Counter("graphhook_validation_handshakes", "Validation handshakes answered",
                                   registry=self.registry)
        self._unavailable = Counter("graphhook_intake_unavailable", "POSTs answered 503 because Redis failed",
                                    registry=self.registry)
        self._latency = Histogram("graphhook_intake_seconds", "Time to check and persist a POST",
                                  buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.9),
                                  registry=self.registry)

    def accepted(self, n: int) -> None:
        self._received.inc(n)

    def rejected(self, reason: str) -> None:
        self._rejected.labels(reason).inc()

    def handshake(self) -> None:
        self._handshakes.inc()

    def unavailable(self) -> None:
        self._unavailable.inc()

    def observe(self, seconds: float) -> None:
        self._latency.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
