"""The receiver's Redis side: subscription lookups (briefly cached) and persisting jobs in one round trip.

Graph wants an answer well inside 3 s and we must not acknowledge what we did not
persist (graph-protocol.md §2), so a POST costs at most two round trips: one
pipelined HMGET for subscriptions not in the short in-process cache, and one
MULTI/EXEC that creates every RQ job of the POST. Jobs are enqueued by dotted
name; the receiver never imports ``workers``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable

import redis
from rq import Queue, Retry
from rq.job import Job

from . import keys
from .intake import KnownSubscription

PROCESS_JOB = "workers.jobs.process_notifications"
LIFECYCLE_JOB = "workers.jobs.handle_lifecycle"
# Failed jobs come back after these many seconds (the workers run RQ's scheduler); Graph itself is
# done with a notification once we answered 202, so these retries are ours to make.
RETRY_INTERVALS = (10, 60, 300, 900, 3600)
_REGISTRY_FIELDS = ("clientState", "tenantId")


class SubscriptionLookup:
    """Reads ``graphhook:sub:{id}`` hashes; remembers found subscriptions for ``ttl`` seconds.

    Unknown ids are never cached, so a subscription is usable as soon as the renewer
    registers it; a deleted one may still be accepted for up to ``ttl`` seconds,
    which the workers tolerate (they re-read the registry).
    """

    def __init__(self, r: redis.Redis, *, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = r
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, KnownSubscription]] = {}
        self._lock = threading.Lock()

    def find(self, ids: Iterable[str]) -> dict[str, KnownSubscription | None]:
        """Known subscriptions by id (None when not registered); RedisError if Redis fails."""
        now = self._clock()
        found: dict[str, KnownSubscription | None] = {}
        missing: list[str] = []
        with self._lock:
            for sid in dict.fromkeys(ids):
                hit = self._cache.get(sid)
                if hit is not None and hit[0] > now:
                    found[sid] = hit[1]
                else:
                    missing.append(sid)
        if not missing:
            return found
        pipe = self._redis.pipeline(transaction=False)
        for sid in missing:
            pipe.hmget(keys.subscription(sid), _REGISTRY_FIELDS)
        replies = pipe.execute()
        with self._lock:
            if len(self._cache) > 10_000:  # bounded: ids are attacker-chosen only until they are known
                self._cache.clear()
            for sid, values in zip(missing, replies):
                known = KnownSubscription.from_redis(sid, dict(zip(_REGISTRY_FIELDS, values)))
                found[sid] = known
                if known is not None and self._ttl > 0:
                    self._cache[sid] = (now + self._ttl, known)
        return found


class JobWriter:
    """Creates the RQ jobs of one POST atomically: all of them are persisted, or none (RedisError)."""

    def __init__(self, r: redis.Redis, queue_name: str) -> None:
        self.queue = Queue(queue_name, connection=r)
        self._redis = r

    def persist(self, changes: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[str]:
        """One ``process_notifications`` job for all changes, one ``handle_lifecycle`` job per event; job ids."""
        jobs = []
        if changes:
            jobs.append(self._job(PROCESS_JOB, changes, f"{PROCESS_JOB}({len(changes)} notifications)"))
        for event in events:
            jobs.append(self._job(LIFECYCLE_JOB, event,
                                  f"{LIFECYCLE_JOB}({event.get('lifecycleEvent')} {event.get('subscriptionId', '')[:64]})"))
        if not jobs:
            return []
        self.queue.get_redis_server_version()  # cached after the first call; RQ asks before enqueueing
        pipe = self._redis.pipeline(transaction=True)
        pipe.multi()  # RQ switches a caller's pipeline to MULTI itself; doing it first keeps that a no-op
        for job in jobs:
            self.queue.enqueue_job(job, pipeline=pipe)
        pipe.execute()
        return [job.id for job in jobs]


    def _job(self, func: str, arg: Any, description: str) -> Job:
        # Job.create rather than Queue.create_job: the latter re-checks the serializer against a
        # runtime Protocol on every call, a third of the job's cost (default serializer either way).
        # An explicit description keeps RQ from repr()-ing 100 notifications into it.
        return Job.create(func, args=(arg,), connection=self._redis, origin=self.queue.name, retry=_retry(),
                          description=description)


def _retry() -> Retry:
    return Retry(max=len(RETRY_INTERVALS), interval=list(RETRY_INTERVALS))
