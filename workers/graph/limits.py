"""Per-mailbox politeness shared by every worker process, kept in Redis.

Outlook limits each app per mailbox to 4 concurrent requests and 10,000
requests per 10 minutes (https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits).
:class:`MailboxLimiter` is a counting semaphore whose slots expire, so a killed
process cannot hold a slot for longer than ``slot_seconds``, plus a request
budget counted in fixed 10-minute windows. Both live in one Lua script, so
taking a slot is one Redis round trip; times come from Redis's own clock, so
workers on different hosts agree.

When Graph answers a mailbox's request with 429/503/504, :meth:`MailboxLimiter.back_off`
records its ``Retry-After`` for that mailbox, and no process sends that mailbox another request
before it has passed: a worker's request raises :class:`MailboxBusy` at once (the job is deferred,
see workers/concurrent.py), a command-line request waits.
"""

from __future__ import annotations

import contextlib
import logging
import random
import secrets
import time
from typing import Callable, Iterator

import redis

from graphhook.core import keys
from graphhook.core.errors import MailboxBusy, ThrottledError

log = logging.getLogger("graphhook.limits")

PREFIX = "graphhook:mailbox"
SLOT_SECONDS = 90.0  # a slot not released by then is free again (longer than any request timeout)
BUDGET_WINDOW = 600  # seconds, Graph's window for the 10,000-request budget
MAX_WAIT = 120.0  # seconds a request waits for a slot or budget before giving up (ThrottledError)
ALIASES = f"{PREFIX}:aliases"  # hash: lower-case address -> user id (Graph counts both as one mailbox)
ADDRESSES = f"{PREFIX}:addresses"  # hash: user id -> address (names the mailbox in records from delta resync)
THROTTLED = keys.MAILBOXES_THROTTLED  # zset: mailbox -> end of its Retry-After (ms); metrics count the live ones

# KEYS: slots zset, budget counter, Retry-After end. ARGV: token, limit, weight, slot ms, budget, window s, cost.
# Returns {1, 0, 0} when taken; {0, wait_ms, why} when not: why 1 = over budget, 2 = in Retry-After, 0 = slots full
# (wait_ms: until the earliest slot expires, the window ends or the Retry-After has passed).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, weight = tonumber(ARGV[2]), tonumber(ARGV[3])
local until_ms = tonumber(redis.call('GET', KEYS[3]) or '0')
if until_ms > now then
  return {0, until_ms - now, 2}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local used = redis.call('GET', KEYS[2])
used = used and tonumber(used) or 0
if used + tonumber(ARGV[7]) > tonumber(ARGV[5]) then
  local ttl = redis.call('PTTL', KEYS[2])
  return {0, ttl > 0 and ttl or 1000, 1}
end
if redis.call('ZCARD', KEYS[1]) + weight > limit then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, first[2] and (tonumber(first[2]) - now) or 50, 0}
end
for i = 1, weight do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1] .. ':' .. i)
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]) + 1000)
redis.call('INCRBY', KEYS[2], tonumber(ARGV[7]))
if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6])) end
return {1, 0, 0}
"""

# KEYS: Retry-After end, throttled zset. ARGV: mailbox, wait ms. Keeps the later end; returns it (ms).
_BACK_OFF = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[2])
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if old > until_ms then until_ms = old end
redis.call('SET', KEYS[1], until_ms, 'PX', until_ms - now + 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], until_ms, ARGV[1])
return until_ms
"""


class MailboxLimiter:
    """At most ``concurrency`` in-flight requests and ``budget`` requests per window for each mailbox."""

    def __init__(self, r: redis.Redis, *, concurrency: int = 4, budget: int = 10000,
                 slot_seconds: float = SLOT_SECONDS, window: int = BUDGET_WINDOW, max_wait: float = MAX_WAIT,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.redis = r
        self.concurrency, self.budget = concurrency, budget
        self.slot_ms, self.window, self.max_wait = int(slot_seconds * 1000), window, max_wait
        self._sleep, self._clock = sleep, clock
        self._script = r.register_script(_ACQUIRE)
        self._back_off = r.register_script(_BACK_OFF)
        self._aliases: dict[str, str] = {}
        self.waits = 0  # how often a request had to wait (tests, metrics)

    def learn(self, address: str, user_id: str) -> None:
        """Record that ``address`` is the mailbox ``user_id``, so both share one set of slots."""
        address, user_id = address.lower(), user_id.lower()
        if address and user_id and "@" in address and self._aliases.get(address) != user_id:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(ALIASES, address, user_id)
            pipe.hset(ADDRESSES, user_id, address)
            pipe.execute()
            self._aliases[address] = user_id

    def address_of(self, user_id: str) -> str | None:
        """The address learnt for ``user_id``, if any."""
        known = self.redis.hget(ADDRESSES, user_id.lower())
        return known.decode() if known else None

    def canonical(self, mailbox: str) -> str:
        """The user id for an address we have learnt (requests by address and by id count together)."""
        mailbox = mailbox.lower()
        if "@" not in mailbox:
            return mailbox
        if mailbox not in self._aliases:
            known = self.redis.hget(ALIASES, mailbox)
            if known is None:
                return mailbox  # not learnt yet: looked up again next time
            self._aliases[mailbox] = known.decode()
        return self._aliases[mailbox]

    def _keys(self, mailbox: str) -> list[str]:
        mailbox = self.canonical(mailbox)
        window = int(time.time()) // self.window  # the budget key names the window; Redis expires it
        return [f"{PREFIX}:{mailbox}:slots", f"{PREFIX}:{mailbox}:budget:{window}", f"{PREFIX}:{mailbox}:until"]

    def back_off(self, mailbox: str, seconds: float) -> float:
        """Graph said to wait ``seconds`` before the next request to ``mailbox``: no process sends one sooner.

        Returns the seconds left of the mailbox's wait (an earlier, longer Retry-After is kept).
        """
        mailbox = self.canonical(mailbox)
        wait_ms = max(1, int(seconds * 1000))
        until_ms = int(self._back_off(keys=[f"{PREFIX}:{mailbox}:until", THROTTLED], args=[mailbox, wait_ms]))
        now = self.redis.time()
        return max(seconds, (until_ms - (now[0] * 1000 + now[1] // 1000)) / 1000)

    def acquire(self, mailbox: str, weight: int = 1, cost: int | None = None, *, defer: bool = False) -> str:
        """Take ``weight`` slots for ``mailbox`` and ``cost`` (default ``weight``) requests of its budget.

        Waits as needed; returns the token for :meth:`release`. While the mailbox is inside a
        Retry-After, waits it out, or with ``defer`` raises :class:`MailboxBusy` at once.
        """
        cost = max(1, weight if cost is None else cost)
        weight = max(1, min(weight, self.concurrency))
        token = secrets.token_hex(8)
        deadline = self._clock() + self.max_wait
        pause = 0.01
        while True:
            taken, wait_ms, over_budget = self._script(
                keys=self._keys(mailbox),
                args=[token, self.concurrency, weight, self.slot_ms, self.budget, self.window, cost])
            if taken:
                return token
            self.waits += 1
            if over_budget == 2:  # Graph's Retry-After for this mailbox has not passed
                if defer:
                    raise MailboxBusy(mailbox, wait_ms / 1000)
                if self._clock() + wait_ms / 1000 > deadline:
                    raise ThrottledError(429, "MailboxLimit", f"mailbox {mailbox!r} is throttled for "
                                         f"{wait_ms / 1000:.1f}s more", method="", url="")
                self._sleep(wait_ms / 1000)
                continue
            if over_budget:
                log.warning("mailbox %s used its budget of %d requests per %ds; waiting %.1fs",
                            mailbox, self.budget, self.window, wait_ms / 1000)
            delay = min(max(wait_ms / 1000, 0.005), pause) if not over_budget else wait_ms / 1000
            if self._clock() + delay > deadline:
                raise ThrottledError(429, "MailboxLimit", f"no request slot for mailbox {mailbox!r} "
                                     f"within {self.max_wait:.0f}s", method="", url="")
            self._sleep(delay * random.uniform(0.8, 1.2))
            pause = min(pause * 2, 0.2)

    def release(self, mailbox: str, token: str, weight: int = 1) -> None:
        """Give the slots back (they also expire on their own)."""
        weight = max(1, min(weight, self.concurrency))
        self.redis.zrem(f"{PREFIX}:{self.canonical(mailbox)}:slots", *[f"{token}:{i}" for i in range(1, weight + 1)])

    def extend(self, mailbox: str, token: str, weight: int = 1) -> None:
        """Push the expiry of held slots forward (long downloads call this as they go)."""
        expiry = int(self.redis.time()[0] * 1000) + self.slot_ms
        self.redis.zadd(f"{PREFIX}:{self.canonical(mailbox)}:slots", {f"{token}:{i}": expiry for i in range(1, weight + 1)}, xx=True)

    @contextlib.contextmanager
    def slot(self, mailbox: str, weight: int = 1) -> Iterator[str]:
        """``with limiter.slot(mailbox):`` around one Graph request."""
        token = self.acquire(mailbox, weight)
        try:
            yield token
        finally:
            self.release(mailbox, token, weight)

    def in_flight(self, mailbox: str) -> int:
        """Slots currently held for ``mailbox`` (expired ones excluded)."""
        now_ms = int(self.redis.time()[0] * 1000)
        return int(self.redis.zcount(f"{PREFIX}:{self.canonical(mailbox)}:slots", now_ms, "+inf"))
