"""The emulator's notion of time, injectable so tests can jump ahead instead of sleeping.

Everything the emulator judges by time reads this clock: subscription expiry
and the ``reauthorizationRequired`` schedule, the ``iat``/``nbf``/``exp`` of the
tokens it issues and the ``exp`` it checks, throttling windows, delivery
retries and the slow-endpoint tally. ``Emulator.advance(seconds)`` moves it.

A clock is wall time plus an offset; ``advance`` grows the offset, so real
time keeps flowing underneath (threads still make progress) while tests can
skip hours in one call.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Callable


class Clock:
    """Wall time (or ``source()``, epoch seconds) plus an offset that :meth:`advance` grows."""

    def __init__(self, source: Callable[[], float] | None = None, *, start: dt.datetime | None = None) -> None:
        self._source = source or time.time
        self._offset = 0.0
        self._lock = threading.Lock()
        if start is not None:
            self.set(start)

    def time(self) -> float:
        """Epoch seconds, like :func:`time.time`."""
        return self._source() + self._offset

    def now(self) -> dt.datetime:
        """An aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.time(), dt.timezone.utc)

    def monotonic(self) -> float:
        """A monotonic reading that also jumps by whatever :meth:`advance` adds."""
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backwards)."""
        if seconds < 0:
            raise ValueError(f"the clock only moves forward, got {seconds!r} seconds")
        with self._lock:
            self._offset += seconds

    def set(self, moment: dt.datetime) -> None:
        """Jump to ``moment`` (an aware datetime); real time keeps flowing from there."""
        if moment.tzinfo is None:
            raise ValueError(f"moment must be timezone-aware, got {moment!r}")
        with self._lock:
            self._offset = moment.timestamp() - self._source()

    @property
    def offset(self) -> float:
        """Seconds added to the source so far."""
        return self._offset


def as_clock(value: "Clock | Callable[[], float] | None") -> Clock:
    """Accept a :class:`Clock`, a zero-argument callable returning epoch seconds, or None (wall time)."""
    if value is None:
        return Clock()
    if isinstance(value, Clock):
        return value
    if callable(value):
        return Clock(value)
    raise TypeError(f"clock must be a Clock or a callable returning epoch seconds, got {value!r}")
