"""Idle workers run RQ's maintenance on schedule, not only between jobs.

RQ runs maintenance (retrying the jobs of dead workers, failing jobs stuck
between dequeue and start into their retry, restarting a scheduler that
died) between blocking dequeues, and an idle worker blocks for
``worker_ttl - 15`` = 405 s. So after a worker crash or a Redis restart in a
quiet period, the rescue — and every scheduled retry, when the scheduler
died with Redis — waited up to seven minutes instead of
GRAPHHOOK_WORKER_MAINTENANCE_SECONDS. Capping the blocking dequeue at the
maintenance interval makes that setting hold for idle workers too; the cost
is one BLMOVE per interval.
"""

from __future__ import annotations


class OnScheduleMaintenance:
    """Mixin for RQ workers: never block in a dequeue longer than the maintenance interval."""

    @property
    def dequeue_timeout(self) -> int:
        """Seconds an idle worker waits for a job before it runs maintenance (if due) and waits again."""
        return max(1, min(super().dequeue_timeout, int(self.maintenance_interval)))  # type: ignore[misc]
