"""Worker teardown that never waits out RQ's pub/sub poll.

RQ listens for commands (stop a job, shut down) on a Redis pub/sub channel in a
daemon thread polling with a 60 s timeout (``BaseWorker.subscribe``). When the
work loop ends, RQ sends UNSUBSCRIBE and then stops that thread, and redis-py's
``PubSubWorkerThread.stop()`` joins it without a timeout. If the listener reads
the UNSUBSCRIBE reply before ``stop()`` clears its running flag — on a busy
machine it often does — it finds itself subscribed to nothing and waits up to
60 s for a subscription that never comes, and the process waits with it:
``graphhook worker --burst`` lingered 60 s after "done, quitting", and a pool
took as long to stop. Clearing the flag *before* unsubscribing closes the
window: the reply wakes the listener, which then sees the flag and returns.
"""

from __future__ import annotations

from typing import Any


class PromptShutdown:
    """Mixin for RQ workers: stop the pub/sub listener before unsubscribing, so teardown never waits on its poll."""

    def unsubscribe(self) -> None:
        """RQ's unsubscribe, with the listener told to stop first."""
        listener = getattr(self, "pubsub_thread", None)
        if listener is not None:
            _tell_to_stop(listener)
        super().unsubscribe()  # type: ignore[misc]


def _tell_to_stop(listener: Any) -> None:
    """Clear the listener's running flag without waiting for it to finish."""
    try:
        listener.stop(timeout=0)  # redis-py 8: clears the flag, then joins for 0 s
    except TypeError:
        listener.stop()  # older redis-py: stop() only clears the flag
