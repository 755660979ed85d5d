"""graphhook's RQ jobs are JSON, never pickle: whoever can write Redis must not run code in our processes.

RQ pickles job data by default, and unpickling runs whatever the pickle names
(https://docs.python.org/3/library/pickle.html: "never unpickle data that could have come from
an untrusted or tampered source"). Every Queue, Worker, registry and Job graphhook opens — the
receiver's job-writing script (receiver/store.py), the workers, the renewer, the ``/status``
page and rq-dashboard — uses :class:`JobSerializer`, RQ's own JSON serializer
(custom serializers, https://python-rq.org/docs/jobs/) and :class:`SafeJob`.

Data that is not JSON — a job queued in pickle form by a version before this one, or one planted
in Redis — is refused and never unpickled: the job fails for good (retrying cannot make it
readable), one ERROR line names it, and it stays in the failed registry (docs/workers.md#jobs-are-json).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from rq import Queue
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.serializers import JSONSerializer

from graphhook.core.errors import GraphhookError

log = logging.getLogger("graphhook.jobs")


class NotJSONJob(GraphhookError):
    """A job's data is not JSON (a pickle from before graphhook used JSON, or planted): refused, never unpickled."""


class JobSerializer(JSONSerializer):
    """RQ's JSON serializer; data that is not JSON raises :class:`NotJSONJob` instead of being unpickled."""

    @staticmethod
    def loads(s: bytes, *args: Any, **kwargs: Any) -> Any:
        """Decode JSON job data, meta or results; anything else is refused."""
        try:
            return JSONSerializer.loads(s, *args, **kwargs)
        except (UnicodeDecodeError, ValueError) as exc:
            raise NotJSONJob("job data is not JSON (pickle form?): refused, not unpickled") from exc


class SafeJob(Job):
    """An RQ job that does not retry when its data is not JSON, and says so once in the log."""

    @property
    def should_retry(self) -> bool:
        """RQ asks this after a failure; unreadable data stays unreadable, so it goes to the failed registry."""
        try:
            self.func_name  # noqa: B018 — deserializes the data (JobSerializer: never unpickles)
        except DeserializationError:
            log.error("job %s refused: its data is not JSON (queued in pickle form before the upgrade, or planted "
                      "in Redis); never run, moved to the failed registry (docs/workers.md#jobs-are-json); "
                      "description: %.200s", self.id, self.description or "", extra={"job_id": self.id})
            return False
        return bool(super().should_retry)


def queue(name: str, connection: redis.Redis, **kwargs: Any) -> Queue:
    """An RQ queue whose jobs are JSON (:class:`JobSerializer`, :class:`SafeJob`)."""
    return Queue(name, connection=connection, serializer=JobSerializer, job_class=SafeJob, **kwargs)


def fetch(job_id: str, connection: redis.Redis) -> SafeJob:
    """``Job.fetch`` with graphhook's serializer: reading a planted pickle never unpickles it."""
    return SafeJob.fetch(job_id, connection=connection, serializer=JobSerializer)


def fetch_many(job_ids: list[str], connection: redis.Redis) -> list[SafeJob | None]:
    """``Job.fetch_many`` with graphhook's serializer."""
    return SafeJob.fetch_many(job_ids, connection=connection, serializer=JobSerializer)  # type: ignore[return-value]


WORKER_OPTIONS: dict[str, Any] = {"serializer": JobSerializer, "job_class": SafeJob}
"""Keyword arguments for RQ's ``Worker`` / ``SimpleWorker`` / ``WorkerPool`` so they read JSON jobs only."""
