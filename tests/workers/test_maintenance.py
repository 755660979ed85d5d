"""An idle worker runs RQ's maintenance every GRAPHHOOK_WORKER_MAINTENANCE_SECONDS, not only between jobs.

Found by the soak under load: Redis was killed between a worker's dequeue of a job and its start, the
job stayed in RQ's intermediate list, and the idle workers, blocked 405 s in their dequeue, did not run
the maintenance that fails it into its retry (nor restart the scheduler that died with Redis).
"""

from __future__ import annotations

import subprocess
import sys
import time

from graphhook.core import jobformat
from tests.conftest import stop_process, wait_for, worker_env
from workers.metrics import MeteredSimpleWorker, MeteredWorker


def noop() -> None:
    """A job that does nothing."""


def test_an_idle_worker_blocks_no_longer_than_the_maintenance_interval(redis_client):
    for worker_class in (MeteredSimpleWorker, MeteredWorker):
        assert worker_class(["q"], connection=redis_client, maintenance_interval=5).dequeue_timeout == 5
        assert worker_class(["q"], connection=redis_client, maintenance_interval=3600).dequeue_timeout == 405


def test_an_idle_worker_rescues_a_job_stuck_between_dequeue_and_start(emulator, settings, redis_client,
                                                                      tmp_path):
    queue = jobformat.queue(settings.queue_name, redis_client)
    env = {**worker_env(settings, emulator), "GRAPHHOOK_WORKER_MAINTENANCE_SECONDS": "1"}
    log = open(tmp_path / "worker.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "graphhook", "worker", "--simple"], env=env, stdout=log,
                            stderr=log)
    try:
        # Idle: registered, its start-up maintenance done, blocked in its dequeue.
        wait_for(lambda: [w for w in queue.connection.smembers(f"rq:workers:{queue.name}")
                          if redis_client.hget(w, "state") == b"idle"], timeout=60)
        # A job taken off the queue by a worker that then died (or whose next write Redis lost), first seen
        # there by a maintenance pass two minutes ago: RQ's rule for "stuck" (rq.intermediate_queue).
        job = jobformat.SafeJob.create(noop, connection=redis_client, origin=queue.name, serializer=jobformat.JobSerializer)
        job.save()
        redis_client.lpush(queue.intermediate_queue.key, job.id)
        redis_client.set(queue.intermediate_queue.get_first_seen_key(job.id), time.time() - 120)
        # Waits for the rescue; the bound only guards against a hang (RQ alone would take up to 405 s).
        wait_for(lambda: job.get_status(refresh=True) == "failed", timeout=60)
        assert job.id not in queue.intermediate_queue.get_job_ids()
    finally:
        stop_process(proc)
        log.close()
