"""One large request at a time per worker process, so that small ones — Graph's — never queue behind many.

On the gevent worker the receiver runs (``receiver/gunicorn_conf.py``) every connection is a
greenlet of one process, and CPU work (parsing a body, checking its items) does not yield: a
small POST that waits for Redis for a moment resumes only after every other runnable greenlet
has had its turn. With a dozen hostile ~4 MiB POSTs in flight that is a dozen parses per wait,
and Graph's single-notification POST took seconds (issue 17). Here a request whose body is
larger than ``threshold`` bytes waits for the process's one large-request lane before the app
runs: the large ones are served one after the other, and a small POST waits for at most one of
them between its own steps. Large requests are still served, in turn; none is refused.

The lane sits inside :class:`receiver.bodydeadline.BodyDeadline`: the body is read (under its
deadline) before the request queues, so a client trickling a large body never holds the lane.
The semaphore is made in each worker process on first use, as the process's threading is then
(gevent's under the gevent worker, where ``threading`` is monkey-patched; a real one under sync
or gthread), so the app may be built before gunicorn forks or patches.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Iterable

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]
# Bodies up to this size skip the lane: a single Graph notification is ~700 bytes and a batch of 50 basic ones
# ~35 KiB; what fits costs a few milliseconds to parse and check. Rich batches above it are served in turn.
LARGE_BODY = 64 * 1024  # bytes


class LargeRequestLane:
    """WSGI middleware: requests with a body over ``threshold`` bytes (or of unknown length) run one at a time."""

    def __init__(self, app: WSGIApp, *, threshold: int = LARGE_BODY) -> None:
        self.app = app
        self.threshold = threshold
        self._made = threading.Lock()
        self._lane: Any = None
        self._pid = 0
        self.waiting = 0  # requests of this process queued for the lane now

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = self.threshold + 1  # malformed: the app answers 400, in turn
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if length <= self.threshold and not chunked:
            return self.app(environ, start_response)
        lane = self._semaphore()
        with self._made:
            self.waiting += 1
        try:
            lane.acquire()
        finally:
            with self._made:
                self.waiting -= 1
        try:  # Flask does its work in this call and returns the finished response's bytes
            return self.app(environ, start_response)
        finally:
            lane.release()

    def _semaphore(self) -> Any:
        """This process's lane (made after a fork, in whatever ``threading`` the process then has)."""
        with self._made:
            if self._pid != os.getpid():
                self._lane = threading.Semaphore(1)
                self._pid = os.getpid()
            return self._lane
