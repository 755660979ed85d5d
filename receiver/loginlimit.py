"""Failed logins to ``/status`` and ``/metrics``, counted per client address in Redis: past a limit, 429.

Basic auth is what browsers send, and people choose guessable passwords: without a
limit the public receiver is a free password oracle. Counts live in Redis so every
gunicorn worker and web replica shares them. A fixed window (one key per address
and window, expiring with it) is enough for a brute-force brake and costs one
round trip per check; the clock is injected so tests move time instead of sleeping.
While an address is over the limit even correct credentials get 429: otherwise
the answer to a guess would still say whether it was right.
"""

from __future__ import annotations

import hashlib
from typing import Callable

import redis

from graphhook.core import keys

KEY_PREFIX = f"{keys.PREFIX}:loginfail"


class LoginLimit:
    """At most ``limit`` failed logins per client address per ``window`` seconds."""

    def __init__(self, r: redis.Redis, *, limit: int, window: int, clock: Callable[[], float]) -> None:
        if limit < 1 or window < 1:
            raise ValueError(f"limit and window must be at least 1, got {limit!r} and {window!r}")
        self._redis = r
        self._limit = limit
        self._window = window
        self._clock = clock

    def _key(self, address: str) -> tuple[str, float]:
        """The window's Redis key for ``address`` and the seconds left in that window."""
        now = self._clock()
        index = int(now // self._window)
        # Hashed: an address (or whatever a proxy put in X-Forwarded-For) never becomes a raw key name.
        digest = hashlib.sha256(address.encode("utf-8", "replace")).hexdigest()[:32]
        return f"{KEY_PREFIX}:{index}:{digest}", (index + 1) * self._window - now

    def retry_after(self, address: str) -> int:
        """Seconds until ``address`` may try again; 0 when it is under the limit. Raises RedisError."""
        key, left = self._key(address)
        count = int(self._redis.get(key) or 0)
        return max(1, int(left + 0.999)) if count >= self._limit else 0

    def failed(self, address: str) -> None:
        """Count one failed login from ``address``. Raises RedisError."""
        key, _ = self._key(address)
        pipe = self._redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, self._window * 2)
        pipe.execute()
