"""A plain-text progress bar for long operator commands (``graphhook purge``), drawn on a terminal only.

It redraws one line with ``\\r``; it draws nothing when the stream is not a
terminal (logs, pipes, CI) or when disabled (``--quiet``), so scripted runs
see only the final report.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, TextIO

MIN_INTERVAL = 0.1  # s between redraws; more often only costs the terminal


class ProgressBar:
    """``bar(snapshot)`` with ``{"done", "total", ...counters}``; ``bar.close()`` ends the line."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None, width: int = 30,
                 label: str = "mailboxes", clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = (bool(isatty and isatty())) if enabled is None else enabled
        self.width, self.label, self._clock = width, label, clock
        self._last = float("-inf")
        self._drawn = False
        self._lock = threading.Lock()

    def render(self, snapshot: dict[str, int]) -> str:
        """The bar's text for one snapshot (pure; tests and other front ends use it)."""
        done, total = snapshot.get("done", 0), max(snapshot.get("total", 0), 0)
        filled = self.width if total == 0 else min(self.width, self.width * done // total)
        counters = "  ".join(f"{name} {snapshot[name]:,}" for name in ("found", "removed", "failed")
                             if name in snapshot)
        return f"[{'#' * filled}{'.' * (self.width - filled)}] {done:,}/{total:,} {self.label}  {counters}".rstrip()

    def __call__(self, snapshot: dict[str, int]) -> None:
        if not self.enabled:
            return
        with self._lock:
            now = self._clock()
            final = snapshot.get("done", 0) >= snapshot.get("total", 0)
            if not final and now - self._last < MIN_INTERVAL:
                return
            self._last = now
            self.stream.write("\r" + self.render(snapshot))
            self.stream.flush()
            self._drawn = True

    def close(self) -> None:
        """Finish the line so later output starts on a fresh one."""
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
