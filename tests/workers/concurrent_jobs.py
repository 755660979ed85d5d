"""Job functions for tests/workers/test_concurrent.py (enqueued by dotted name, run by real RQ workers)."""

from __future__ import annotations

import threading
import time

from graphhook.core.redisconn import connect
from graphhook.core.settings import Settings

BARRIER: threading.Barrier | None = None
ORDER: list[str] = []


def meet(timeout: float) -> str:
    """Wait at BARRIER: passes only when enough jobs run at the same moment in this process."""
    assert BARRIER is not None
    BARRIER.wait(timeout=timeout)
    return threading.current_thread().name


def note(name: str) -> str:
    """Record that this job ran, in order."""
    ORDER.append(name)
    return name


def linger(seconds: float, key: str) -> str:
    """Say it started (a Redis key), then take ``seconds``: a job still running when the worker is told to stop."""
    connect(Settings.from_env()).set(key, "started")
    time.sleep(seconds)
    return "done"


def busy(seconds: float) -> str:
    """Python work for ``seconds`` (a timeout can interrupt it between bytecodes, as in any real job)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return "done"
