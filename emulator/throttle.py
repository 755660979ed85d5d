"""Outlook's per-app-and-mailbox limits, answered with 429 and ``Retry-After``.

graph-protocol.md §5 (the "Limits per mailbox" include): for one app ID and
one mailbox, at most **4 concurrent requests**, **10,000 requests per 10
minutes** and **150 MB of uploads (PATCH, POST, PUT) per 5 minutes**.

- Over concurrency: ``{"error":{"code":"ApplicationThrottled","message":
  "Application is over its MailboxConcurrency limit."}}`` (observed).
- Over the request rate: Graph's documented generic throttling body,
  ``TooManyRequests`` / ``Please retry again later.``, with ``Retry-After``
  the seconds until the window admits another request.
- Over the upload volume: ``ApplicationThrottled`` with ``IncomingBytes`` in
  the message (the wording is inferred, by analogy with the observed one).

On by default; ``emu.throttle.limits`` holds the knobs (``enabled=False``
switches everything off). Windows run on the emulator's clock.

Every 429 a mailbox is answered (these limits, an injected fault, a ``$batch`` part) sets when it
may be asked again; a request to that mailbox before then is answered 429 again and counted in
``early``, so tests and benchmarks see a client that does not honour ``Retry-After``. Requests
refused for concurrency are counted in ``over_concurrency``; ``peak`` is the most requests one
app had in flight against one mailbox.
"""

from __future__ import annotations

import collections
import math
import threading
from dataclasses import dataclass
from typing import Callable

Key = tuple[str, str, str]  # (app id, tenant id, mailbox user id): limits are per app and mailbox, in one tenant


@dataclass
class ThrottleLimits:
    """The limits per app and mailbox; defaults are Microsoft's."""

    enabled: bool = True
    concurrency: int = 4
    requests: int = 10_000
    window: float = 600.0  # s
    upload_bytes: int = 150 * 1024 * 1024
    upload_window: float = 300.0  # s
    concurrency_retry_after: float = 1.0  # s; Microsoft sends small values here


@dataclass(frozen=True)
class Rejection:
    """Why a request was refused: Graph's error code and message, and when to retry."""

    code: str
    message: str
    retry_after: float
    starts_wait: bool = True  # False for a request refused because it came before the wait was over


class Throttle:
    """Counts in-flight requests, a sliding request window and uploaded bytes per key."""

    def __init__(self, monotonic: Callable[[], float], limits: ThrottleLimits | None = None) -> None:
        self.limits = limits or ThrottleLimits()
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._inflight: collections.Counter[Key] = collections.Counter()
        self._recent: dict[Key, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._uploads: dict[Key, collections.deque[tuple[float, int]]] = collections.defaultdict(collections.deque)
        self.rejected: collections.Counter[str] = collections.Counter()
        self.rejected_by_tenant: collections.Counter[str] = collections.Counter()  # 429s per tenant (key[1])
        self._not_before: dict[Key, float] = {}  # key -> when its last Retry-After ends (emulator clock)
        self.early = 0  # requests sent to a mailbox before its Retry-After had passed
        self.over_concurrency = 0  # requests refused for the 4-concurrent-requests limit
        self.peak = 0  # most requests in flight for one key

    def configure(self, **changes: object) -> ThrottleLimits:
        """Change some limits (``enabled``, ``concurrency``, ``requests``, ``window``, ...)."""
        for name, value in changes.items():
            if not hasattr(self.limits, name):
                raise ValueError(f"unknown throttle limit {name!r}")
            setattr(self.limits, name, value)
        return self.limits

    def acquire(self, key: Key, upload: int = 0) -> Rejection | None:
        """Admit one request (count it in flight) or say why not; admitted ones must be released."""
        rejection = self._acquire(key, upload)
        if rejection is not None:
            with self._lock:
                self.rejected_by_tenant[key[1]] += 1
        return rejection

    def _acquire(self, key: Key, upload: int) -> Rejection | None:
        limits = self.limits
        if not limits.enabled:
            return None
        now = self._monotonic()
        with self._lock:
            not_before = self._not_before.get(key, 0.0)
            if now < not_before:
                self.early += 1
                return self._reject(Rejection("TooManyRequests", "Please retry again later.",
                                              max(1.0, math.ceil(not_before - now)), starts_wait=False))
            if self._inflight[key] >= limits.concurrency:
                self.over_concurrency += 1
                return self._reject(Rejection("ApplicationThrottled", "Application is over its MailboxConcurrency limit.",
                                              limits.concurrency_retry_after))
            recent = self._recent[key]
            while recent and recent[0] <= now - limits.window:
                recent.popleft()
            if len(recent) >= limits.requests:
                return self._reject(Rejection("TooManyRequests", "Please retry again later.",
                                              max(1.0, math.ceil(recent[0] + limits.window - now))))
            uploads = self._uploads[key]
            while uploads and uploads[0][0] <= now - limits.upload_window:
                uploads.popleft()
            if upload and sum(n for _, n in uploads) + upload > limits.upload_bytes:
                return self._reject(Rejection("ApplicationThrottled", "Application is over its IncomingBytes limit.",
                                              max(1.0, math.ceil(uploads[0][0] + limits.upload_window - now))))
            recent.append(now)
            if upload:
                uploads.append((now, upload))
            self._inflight[key] += 1
            self.peak = max(self.peak, self._inflight[key])
            return None

    def in_flight(self) -> int:
        """Requests being served now, all apps and mailboxes (a killed client's requests still finish here)."""
        with self._lock:
            return sum(self._inflight.values())

    def answered_429(self, key: Key, retry_after: float) -> None:
        """A 429 went to ``key`` saying to wait ``retry_after`` seconds: earlier requests will be counted."""
        with self._lock:
            until = self._monotonic() + max(0.0, retry_after)
            self._not_before[key] = max(self._not_before.get(key, 0.0), until)

    def stats(self) -> dict[str, object]:
        """What the limits refused, and the client's manners: ``early`` and ``over_concurrency`` should stay 0."""
        with self._lock:
            return {"rejected": dict(self.rejected), "early": self.early, "overConcurrency": self.over_concurrency,
                    "peakInFlight": self.peak}

    def _reject(self, rejection: Rejection) -> Rejection:
        self.rejected[rejection.code] += 1
        return rejection

    def release(self, key: Key) -> None:
        with self._lock:
            self._inflight[key] -= 1
            if self._inflight[key] <= 0:
                del self._inflight[key]

    def reset(self) -> None:
        """Forget every window and counter (requests in flight stay counted)."""
        with self._lock:
            self._recent.clear()
            self._uploads.clear()
            self.rejected.clear()
            self.rejected_by_tenant.clear()
            self._not_before.clear()
            self.early = self.over_concurrency = self.peak = 0
