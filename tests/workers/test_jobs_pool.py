"""The non-forking worker model: jobs run in long-lived SimpleWorker processes; a crashed one is replaced."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from graphhook.core import jobformat, keys
from tests.conftest import ROOT, stop_process, wait_for, worker_env


def crash() -> None:
    """A job that kills its process outright (no exception for RQ to catch)."""
    os._exit(9)


def pid() -> int:
    """A job that reports the process it ran in."""
    return os.getpid()


def test_pool_runs_jobs_without_forking_and_replaces_a_crashed_worker(emulator, live_settings, redis_client,
                                                                     tmp_path):
    user = emulator.add_user("jack@contoso.com")
    queue = jobformat.queue(live_settings.queue_name, redis_client)
    log = open(tmp_path / "pool.log", "ab")
    env = {**worker_env(live_settings, emulator), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "workers.pool", "--processes", "2"], env=env,
                            stdout=log, stderr=log, cwd=str(ROOT), start_new_session=True)
    try:
        workers_key = f"rq:workers:{live_settings.queue_name}"
        wait_for(lambda: redis_client.scard(workers_key) == 2, timeout=30)
        first = [queue.enqueue("tests.workers.test_jobs_pool.pid") for _ in range(6)]
        wait_for(lambda: all(j.get_status(refresh=True) == "finished" for j in first))
        pids = {j.return_value() for j in first}
        assert 1 <= len(pids) <= 2  # six jobs ran in at most the two long-lived processes: no fork per job

        before = _children(proc.pid)
        assert len(before) == 2 and pids <= before
        crashed = queue.enqueue("tests.workers.test_jobs_pool.crash")
        wait_for(lambda: crashed.get_status(refresh=True) == "started")
        # The pool notices the dead process and starts a new one in its place.
        after = wait_for(lambda: _replaced(proc.pid, before), timeout=60)
        assert len(before - after) == 1

        message = emulator.deliver("jack@contoso.com", {"subject": "after the crash"})
        queue.enqueue("workers.jobs.process_notifications", [{
            "subscriptionId": "sub-pool", "tenantId": live_settings.tenant_id, "changeType": "created",
            "resource": f"Users/{user.id}/Messages/{message['id']}", "resourceData": {"id": message["id"]}}])
        events = wait_for(lambda: redis_client.lrange(keys.EVENTS, 0, -1), timeout=60)
        assert json.loads(events[0])["email"]["subject"] == "after the crash"
    finally:
        stop_process(proc)  # the pool stops its workers and waits for them to exit


def _replaced(parent: int, before: set[int]) -> set[int] | None:
    now = _children(parent)
    return now if len(now) == 2 and now != before else None


def _children(parent: int) -> set[int]:
    """Live worker processes of the pool (psutil reads /proc)."""
    import psutil

    return {c.pid for c in psutil.Process(parent).children() if c.status() != psutil.STATUS_ZOMBIE}
