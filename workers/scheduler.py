"""RQ's scheduler in a thread of the worker, not in a forked process that can outlive it.

RQ starts its scheduler (which moves due retries and deferred jobs onto the queue) as a forked
child of the worker. The child inherits the worker's open Redis sockets. When the worker is
SIGKILLed (OOM, a platform's kill), the orphaned child keeps running and keeps those sockets open,
and Redis goes on serving a blocking ``BLMOVE`` the dead worker had sent: the next job is moved into
the queue's intermediate list, where nobody starts it until maintenance fails it into a retry a
minute later. The child also costs about 42 MB.

:class:`ThreadScheduler` runs RQ's own scheduler loop in a daemon thread of the worker, with its own
connection, so it dies with the worker; :class:`InThreadScheduler` makes RQ's workers use it.
"""

from __future__ import annotations

import threading
from typing import Any

from rq.scheduler import RQScheduler


class ThreadScheduler(RQScheduler):
    """RQ's scheduler, run by a daemon thread of the current process."""

    def start(self) -> threading.Thread:  # type: ignore[override]
        """Run the scheduling loop in a thread (RQ forks a process here)."""
        self._status = self.Status.STARTED
        self._stop_requested = False
        thread = threading.Thread(target=self.work, name="rq-scheduler", daemon=True)
        thread.pid = None  # type: ignore[attr-defined]  # RQ's stop_scheduler signals a pid: there is none to signal
        self._process = thread
        thread.start()
        return thread

    def _install_signal_handlers(self) -> None:
        """The worker's handlers stop it (signal handlers can only be set in the main thread)."""

    def stop_thread(self, timeout: float = 5.0) -> None:
        """Ask the loop to stop (it releases its locks) and wait for it."""
        self.request_stop()
        thread = self._process
        if isinstance(thread, threading.Thread) and thread is not threading.current_thread():
            thread.join(timeout)


class InThreadScheduler:
    """Mixin for RQ workers: the scheduler runs in a thread of the worker (:class:`ThreadScheduler`)."""

    def _start_scheduler(self, burst: bool = False, logging_level: Any = "INFO", *args: Any, **kwargs: Any) -> None:
        """RQ's ``_start_scheduler``, with the thread scheduler."""
        self.scheduler = ThreadScheduler(self.queues, connection=self.connection,  # type: ignore[attr-defined]
                                         logging_level=logging_level if logging_level is not None
                                         else self.log.level,  # type: ignore[attr-defined]
                                         serializer=self.serializer)  # type: ignore[attr-defined]
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks:
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            else:
                self.scheduler.start()

    def stop_scheduler(self) -> None:
        """Stop the scheduler thread."""
        scheduler = getattr(self, "scheduler", None)
        if isinstance(scheduler, ThreadScheduler):
            scheduler.stop_thread()
