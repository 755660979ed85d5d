"""A Redis lock with expiry so that one renewer replica acts at a time and a dead one is taken over."""

from __future__ import annotations

import uuid

import redis

# Extend only if we still hold the lock (compare-and-expire), atomically.
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LeaderLock:
    """``acquire()`` takes or extends the lock; it lapses ``ttl`` seconds after the holder stops extending."""

    def __init__(self, r: redis.Redis, key: str, *, ttl: float = 90.0, owner: str | None = None) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, got {ttl!r}")
        self._redis, self.key, self.ttl_ms = r, key, int(ttl * 1000)
        self.owner = owner or uuid.uuid4().hex
        self._extend = r.register_script(_EXTEND)
        self._release = r.register_script(_RELEASE)

    def acquire(self) -> bool:
        """True if this process holds the lock now (newly taken or extended)."""
        if self._redis.set(self.key, self.owner, nx=True, px=self.ttl_ms):
            return True
        return bool(self._extend(keys=[self.key], args=[self.owner, self.ttl_ms]))

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.owner])

    def holder(self) -> str | None:
        value = self._redis.get(self.key)
        return value.decode() if value else None
