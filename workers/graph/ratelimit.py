"""A sliding-window limiter for Graph's subscription write limit, with an injected clock.

Graph allows 1,000 subscription writes (POST, PATCH, DELETE) per 20 s per app
per tenant (https://learn.microsoft.com/graph/throttling-limits#subscription-service-limits);
we stay a little under it so another tool using the same app is not starved.
"""

from __future__ import annotations

import collections
import time
from typing import Callable

WRITE_LIMIT = 900  # writes per window; Graph's limit is 1,000
WRITE_WINDOW = 20.0  # seconds


class WriteLimiter:
    """Blocks (via ``sleep``) until another write fits in the window."""

    def __init__(self, limit: int = WRITE_LIMIT, window: float = WRITE_WINDOW, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        if limit < 1 or window <= 0:
            raise ValueError(f"limit and window must be positive, got {limit!r} per {window!r}s")
        self.limit, self.window = limit, window
        self._clock, self._sleep = clock, sleep
        self._stamps: collections.deque[float] = collections.deque()
        self.waited = 0.0

    def acquire(self) -> None:
        """Wait until a write is allowed, then count it."""
        while True:
            now = self._clock()
            while self._stamps and self._stamps[0] <= now - self.window:
                self._stamps.popleft()
            if len(self._stamps) < self.limit:
                self._stamps.append(now)
                return
            delay = self._stamps[0] + self.window - now + 0.001
            self.waited += delay
            self._sleep(delay)
