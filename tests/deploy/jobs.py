"""Jobs the deploy tests enqueue into real worker processes (importable by dotted name)."""

from __future__ import annotations

import os
import time

import redis


def slow_job(redis_url: str, key: str, seconds: float) -> str:
    """Mark ``key`` started, work for ``seconds``, then mark it done; return ``"done"``."""
    r = redis.Redis.from_url(redis_url)
    r.set(f"{key}:started", os.getpid())
    time.sleep(seconds)
    r.set(f"{key}:done", os.getpid())
    return "done"


def echo(value: str) -> str:
    """Return ``value``: a job that needs nothing but a worker."""
    return value
