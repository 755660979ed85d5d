"""The receiver's Redis side: subscription lookups (briefly cached) and persisting jobs in one command.

Graph wants an answer well inside 3 s and we must not acknowledge what we did not
persist (graph-protocol.md §2), so a POST costs at most two round trips: one
script call that HMGETs the subscriptions not in the short in-process cache, and one
script call that creates every RQ job of the POST atomically. Jobs are enqueued
by dotted name; the receiver never imports ``workers``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
import zlib
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Callable, Iterable

import redis
from redis.exceptions import NoScriptError
from rq import Queue, Retry
from rq.job import Job, JobStatus

from graphhook.core import jobformat, keys
from graphhook.core.jobformat import JobSerializer, SafeJob
from graphhook.core.notifications import mailbox_key
from receiver.intake import REGISTRY_FIELDS, KnownSubscription

PROCESS_JOB = "workers.jobs.process_notifications"
LIFECYCLE_JOB = "workers.jobs.handle_lifecycle"
# Failed jobs come back after these many seconds (the workers run RQ's scheduler); Graph itself is
# done with a notification once we answered 202, so these retries are ours to make.
RETRY_INTERVALS = (10, 60, 300, 900, 3600)
JOB_TIMEOUT = 180  # s a worker may spend on one job (RQ's default, made explicit)
COMPRESS_ABOVE = 2048  # bytes of job data; a 100-notification POST is ~40 kB and shrinks ~10x
_JOB_PREFIX = Job.redis_job_namespace_prefix
_PER_JOB_FIELDS = frozenset({"data", "description", "created_at", "enqueued_at", "status"})


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
        # One script call for all ids instead of a pipeline of HMGETs: redis-py packs and parses each command of a
        # pipeline in Python (~15 µs), so a POST of 1000 random ids cost 15 ms of the worker's CPU; as arguments of
        # one command they cost ~1 ms. Script.__call__ loads the script again after a Redis restart.
        self._hmget = r.register_script(_HMGET_EACH)

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
        replies = self._hmget(keys=[keys.subscription(sid) for sid in missing], args=REGISTRY_FIELDS)
        with self._lock:
            if len(self._cache) > 10_000:  # bounded: ids are attacker-chosen only until they are known
                self._cache.clear()
            for sid, values in zip(missing, replies):
                known = KnownSubscription.from_redis(sid, dict(zip(REGISTRY_FIELDS, values)))
                found[sid] = known
                if known is not None and self._ttl > 0:
                    self._cache[sid] = (now + self._ttl, known)
        return found


# KEYS: registry hashes; ARGV: field names. The fields of each hash, in order (nil for a missing field or hash).
_HMGET_EACH = """
local replies = {}
for i = 1, #KEYS do replies[i] = redis.call('HMGET', KEYS[i], unpack(ARGV)) end
return replies
"""


class JobWriter:
    """Creates the RQ jobs of one POST in one Redis command: all of them are enqueued, or none.

    What RQ's ``Queue.enqueue_job`` writes for a job (``SADD rq:queues``, the job hash with status
    ``queued``, ``RPUSH`` of its id) is written here by one Lua script, because intake throughput
    is bounded by the receiver's CPU and RQ's general-purpose path (a MULTI of four commands, a
    Job object and ``to_dict`` per job) costs more than the rest of a POST together
    (benchmarks/intake.py). The job hash is still RQ's own: the fields that are the same for every
    job (origin, timeout, retries, …) come from ``Job.to_dict()`` of a template job built here by
    RQ, and are baked into the script; only id, data, description and timestamps vary. The script
    writes nothing when the first job already exists, so redis-py's retry after a lost reply cannot
    enqueue a POST twice. Job data is JSON (graphhook/core/jobformat.py), never pickle: whoever can
    write Redis must not make a worker run code. tests/receiver/test_store.py checks the result
    against RQ's own enqueue with the same serializer, field by field.
    """

    def __init__(self, r: redis.Redis, queue_name: str) -> None:
        self.queue = jobformat.queue(queue_name, r)
        self._script = r.register_script(_persist_script(_static_fields(r, queue_name)))  # knows its SHA-1
        self._keys_prefix = (Queue.redis_queues_keys, self.queue.key)
        self._own = _ThreadClients(r)

    def persist(self, changes: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[str]:
        """One ``process_notifications`` job per mailbox, one ``handle_lifecycle`` job per event; job ids.

        A job per mailbox lets workers run mailboxes side by side and share themselves fairly between
        them (workers/concurrent.py). Raises RedisError when Redis cannot take them; then nothing was written.
        """
        calls: list[tuple[str, Any, str]] = []
        by_mailbox: dict[str, list[dict[str, Any]]] = {}
        for change in changes:
            by_mailbox.setdefault(mailbox_key(change.get("resource")), []).append(change)
        for group in by_mailbox.values():
            calls.append((PROCESS_JOB, group, f"{PROCESS_JOB}({len(group)} notifications)"))
        for event in events:
            calls.append((LIFECYCLE_JOB, event,
                          f"{LIFECYCLE_JOB}({event.get('lifecycleEvent')} {event.get('subscriptionId', '')[:64]})"))
        if not calls:
            return []
        ids = [str(uuid.uuid4()) for _ in calls]  # RQ's own id format
        args: list[Any] = []
        for job_id, (func, arg, description) in zip(ids, calls):
            args += [job_id, _job_data(func, arg), description]
        args.append(_utcnow())  # created_at = enqueued_at
        keys = (*self._keys_prefix, *(_JOB_PREFIX + job_id for job_id in ids))
        try:  # EVALSHA directly: redis-py's Script wrapper costs a tenth of the call
            self._own.client().evalsha(self._script.sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted or failed over since: load it and go on
            self._script(keys=keys, args=args)
        return ids


class _ThreadClients:
    """A client per thread that keeps one connection of the shared pool checked out.

    Checking a connection out of redis-py's pool for every command costs as much CPU as
    the command itself (a readability poll of the socket, locks, argument checks), and
    the receiver issues one command per POST. Each thread keeps its own connection instead:
    same pool, same settings, same reconnect-on-error; none is shared across threads or forked
    processes. Under the gevent worker (``receiver/gunicorn_conf.py``) a "thread" is a client
    connection's greenlet: its POSTs share one Redis connection, returned to the pool when the
    greenlet ends and the client is collected.
    """

    def __init__(self, r: redis.Redis) -> None:
        self._pool = r.connection_pool
        self._local = threading.local()

    def client(self) -> redis.Redis:
        local = self._local
        if getattr(local, "pid", None) != _PID[0]:  # first use in this thread, or inherited across a fork
            local.client = redis.Redis(connection_pool=self._pool, single_connection_client=True)
            local.pid = _PID[0]
        return local.client


_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


def _utcnow() -> str:
    """Now in RQ's timestamp format (``rq.utils.utcformat``), via the faster ``isoformat``."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z"


def _job_data(func: str, arg: Any) -> bytes:
    """RQ's job data: graphhook's JSON serializer over (function name, instance, args, kwargs).

    Compressed like RQ's own ``to_dict`` only when that pays: RQ reads uncompressed data too
    (``Job.restore`` falls back to it), and compressing a one-notification job costs more CPU
    than it saves memory.
    """
    data = JobSerializer.dumps((func, None, (arg,), {}))  # JSON, never pickle (graphhook/core/jobformat.py)
    return zlib.compress(data) if len(data) > COMPRESS_ABOVE else data


def _static_fields(r: redis.Redis, queue_name: str) -> dict[str, str]:
    """The job-hash fields RQ writes alike for every job of ours, read off RQ's own ``to_dict``."""
    template = SafeJob.create(PROCESS_JOB, args=(None,), connection=r, origin=queue_name, retry=_retry(),
                              timeout=JOB_TIMEOUT, description="", serializer=JobSerializer)
    fields = {}
    for name, value in template.to_dict().items():
        if name in _PER_JOB_FIELDS or value in ("", None):  # RQ reads a missing field as an empty one
            continue
        fields[name] = str(value.value if isinstance(value, Enum) else value)
    fields["status"] = JobStatus.QUEUED.value  # what enqueueing sets
    return fields


def _persist_script(static: dict[str, str]) -> str:
    """KEYS: rq:queues, the queue, then one job key per job; ARGV: (id, data, description) per job, then the time."""
    pairs = ", ".join(f"{_lua(k)}, {_lua(v)}" for k, v in static.items())
    return f"""
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local at = ARGV[#ARGV]
local ids = {{}}
for i = 3, #KEYS do
  local a = (i - 3) * 3
  redis.call('HSET', KEYS[i], 'data', ARGV[a + 2], 'description', ARGV[a + 3], 'created_at', at, 'enqueued_at', at,
             {pairs})
  ids[#ids + 1] = ARGV[a + 1]
end
for i = 1, #ids, 1000 do redis.call('RPUSH', KEYS[2], unpack(ids, i, math.min(i + 999, #ids))) end
redis.call('SADD', KEYS[1], KEYS[2])
return #ids
"""


def _lua(text: str) -> str:
    """A Lua string literal for ``text`` (printable ASCII kept, every other byte as a 3-digit escape)."""
    return '"' + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}"
                         for b in text.encode()) + '"'


def _retry() -> Retry:
    return Retry(max=len(RETRY_INTERVALS), interval=list(RETRY_INTERVALS))
