"""Delivering change and lifecycle notifications the way Microsoft Graph does.

graph-protocol.md §2: notifications are POSTed as ``{"value": [...]}``
collections, batched across subscriptions sharing a URL; the publisher's
HTTP client times out after 3 s; an answer slower than 2,900 ms is *slow*;
once an endpoint has had 100 notifications, 10 % slow throttles it (delayed
delivery) and 15 % drops notifications; the tally resets every 10 minutes.
Failed deliveries are retried with back-off for up to 4 hours. Delivery is
at-least-once and unordered: duplicates and reordering can be switched on.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import requests

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 3.0  # s, the publisher's HTTP client timeout
SLOW_THRESHOLD = 2.9  # s
MIN_SAMPLE = 100  # notifications before the slow percentage counts
THROTTLE_RATIO, DROP_RATIO = 0.10, 0.15
TALLY_WINDOW = 600.0  # s, tally reset
RETRY_WINDOW = 4 * 3600.0  # s, then the notification is discarded


@dataclass
class DeliveryOptions:
    """Knobs for tests; defaults are Microsoft's documented numbers except the retry pace."""

    batch_size: int = 50
    batch_window: float = 0.05  # s; changes this close together share one POST
    first_retry: float = 1.0  # s; Graph waits minutes, tests cannot
    max_retry: float = 60.0  # s
    retry_window: float = RETRY_WINDOW
    throttle_delay: float = 600.0  # s a throttled endpoint's deliveries are held back
    duplicate_rate: float = 0.0
    reorder: bool = False
    senders: int = 4
    timeout: float = PUBLISH_TIMEOUT


@dataclass
class EndpointStats:
    """Per-URL tally used for Graph's slow-endpoint rules."""

    delivered: int = 0
    slow: int = 0
    failed: int = 0
    dropped: int = 0
    window_start: float = 0.0

    def ratio(self) -> float:
        return self.slow / self.delivered if self.delivered >= MIN_SAMPLE else 0.0

    @property
    def state(self) -> str:
        r = self.ratio()
        return "dropping" if r >= DROP_RATIO else "throttled" if r >= THROTTLE_RATIO else "healthy"


@dataclass(order=True)
class _Pending:
    due: float
    seq: int
    url: str = field(compare=False)
    notification: dict[str, Any] = field(compare=False)
    first_try: float = field(compare=False, default=0.0)
    attempts: int = field(compare=False, default=0)
    app_id: tuple[str, str] | None = field(compare=False, default=None)  # rich: (app, tenant) of its validation token


class Delivery:
    """A scheduler plus sender threads that POST notification collections."""

    def __init__(self, session: requests.Session, verify: Any, options: DeliveryOptions | None = None,
                 on_event: Callable[..., None] | None = None, *, monotonic: Callable[[], float] = time.monotonic,
                 token_issuer: Callable[[tuple[str, str]], str] | None = None,
                 on_dropped: Callable[[list[dict[str, Any]]], None] | None = None,
                 timer: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self.timer = timer  # measures how long the endpoint took to answer
        self.token_issuer = token_issuer
        self.on_dropped = on_dropped or (lambda items: None)
        self.session = session
        self.verify = verify
        self.options = options or DeliveryOptions()
        self._heap: list[_Pending] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stop = False
        self._inflight = 0
        self._threads: list[threading.Thread] = []
        self._random = random.Random()
        self.stats: dict[str, EndpointStats] = {}
        self.on_event = on_event or (lambda *a, **k: None)
        self.discarded: list[dict[str, Any]] = []

    def start(self) -> None:
        for i in range(self.options.senders):
            t = threading.Thread(target=self._run, name=f"emulator-delivery-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=5)

    def wake(self) -> None:
        """Re-check due times (after the clock jumped)."""
        with self._cond:
            self._cond.notify_all()

    def submit(self, url: str, notification: dict[str, Any], delay: float = 0.0,
               app_id: tuple[str, str] | None = None) -> None:
        """Schedule one notification for ``url``; duplicates are added here when enabled.

        ``app_id`` marks a rich notification: its POST carries a validation token for that (app, tenant).
        """
        now = self.monotonic()
        copies = 2 if self._random.random() < self.options.duplicate_rate else 1
        with self._cond:
            for n in range(copies):
                jitter = self._random.uniform(0, 0.2) if self.options.reorder else 0.0
                due = now + delay + self.options.batch_window + jitter + n * 0.2
                heapq.heappush(self._heap, _Pending(due, next(self._seq), url, notification,
                                                    now, app_id=app_id))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + self._inflight

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until nothing is queued or in flight (retries scheduled later count as queued)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending() == 0:
                return True
            time.sleep(0.02)
        return False

    def _take_batch(self) -> list[_Pending] | None:
        with self._cond:
            while not self._stop:
                now = self.monotonic()
                if self._heap and self._heap[0].due <= now:
                    first = heapq.heappop(self._heap)
                    batch = [first]
                    rest = []
                    horizon = now + self.options.batch_window
                    while self._heap and self._heap[0].due <= horizon and len(batch) < self.options.batch_size:
                        item = heapq.heappop(self._heap)
                        (batch if item.url == first.url else rest).append(item)
                    for item in rest:
                        heapq.heappush(self._heap, item)
                    self._inflight += 1
                    return batch
                timeout = min(self._heap[0].due - now, 1.0) if self._heap else None
                self._cond.wait(timeout=timeout)
            return None

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                self._send(batch)
            except Exception:  # never let a sender thread die
                log.exception("delivery failed unexpectedly")
            finally:
                with self._cond:
                    self._inflight -= 1

    def _send(self, batch: list[_Pending]) -> None:
        url = batch[0].url
        now = self.monotonic()
        stats = self.stats.get(url)
        if stats is None or now - stats.window_start >= TALLY_WINDOW:  # the tally resets every 10 minutes
            self.stats[url] = stats = EndpointStats(window_start=now)
        if stats.state == "dropping":
            stats.dropped += len(batch)
            dropped = [item.notification for item in batch]
            self.discarded.extend(dropped)
            self.on_event("delivery.dropped", url=url, count=len(batch))
            self.on_dropped(dropped)
            return
        if stats.state == "throttled" and all(item.attempts == 0 for item in batch):
            for item in batch:
                item.attempts = 1  # held back once, then sent by the dedicated path
                self._reschedule(item, self.options.throttle_delay)
            return
        items = list(batch)
        if self.options.reorder:
            self._random.shuffle(items)
        collection: dict[str, Any] = {"value": [i.notification for i in items]}
        apps = sorted({i.app_id for i in items if i.app_id})
        if apps and self.token_issuer is not None:
            # One validation token per distinct app (and tenant) in the collection, at its top level.
            collection["validationTokens"] = [self.token_issuer(app) for app in apps]
        body = json.dumps(collection)
        started = self.timer()
        ok = False
        status = None
        try:
            response = self.session.post(url, data=body, timeout=self.options.timeout, verify=self.verify,
                                         headers={"Content-Type": "application/json; charset=utf-8"})
            status = response.status_code
            ok = 200 <= status < 300
        except requests.RequestException as exc:
            status = type(exc).__name__
        elapsed = self.timer() - started
        stats.delivered += len(items)
        if elapsed > SLOW_THRESHOLD:
            stats.slow += len(items)
        self.on_event("delivery.attempt", url=url, count=len(items), status=status, elapsed=round(elapsed, 4))
        if ok:
            return
        stats.failed += len(items)
        for item in items:
            item.attempts += 1
            if self.monotonic() - item.first_try > self.options.retry_window:
                self.discarded.append(item.notification)
                self.on_event("delivery.discarded", url=url, count=1)
                continue
            if stats.state == "throttled":  # a throttled endpoint's failures are retried after 10 minutes
                self._reschedule(item, self.options.throttle_delay)
                continue
            delay = min(self.options.max_retry, self.options.first_retry * 2 ** (item.attempts - 1))
            self._reschedule(item, delay * self._random.uniform(0.8, 1.2))

    def _reschedule(self, item: _Pending, delay: float) -> None:
        with self._cond:
            item.due = self.monotonic() + delay
            item.seq = next(self._seq)
            heapq.heappush(self._heap, item)
            self._cond.notify()
