"""One worker process keeps many jobs in flight, shares itself fairly between mailboxes, defers throttled ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from emulator.faults import FaultRule
from graphhook.core import jobformat, keys
from tests.conftest import ROOT, stop_process, wait_for, worker_env
from tests.workers import concurrent_jobs
from workers import runtime
from workers.concurrent import ConcurrentWorker

PROCESS = "workers.jobs.process_notifications"


def _item(settings, user_id: str, message_id: str) -> dict:
    return {"subscriptionId": "sub-concurrent", "tenantId": settings.tenant_id, "changeType": "created",
            "resource": f"Users/{user_id}/Messages/{message_id}",
            "resourceData": {"id": message_id, "@odata.etag": 'W/"1"'}}


def _subjects(redis_client) -> list[str]:
    return [json.loads(e)["email"]["subject"] for e in redis_client.lrange(keys.EVENTS, 0, -1)]


def _worker(settings, redis_client, **options) -> ConcurrentWorker:
    queues = [jobformat.queue(name, redis_client) for name in settings.queues]
    options = {"concurrency": 4, "per_mailbox": 4, "backlog": 1000, "shutdown_seconds": 30, **options}
    return ConcurrentWorker(queues, connection=redis_client, **jobformat.WORKER_OPTIONS, **options)


def _worker_process(live_settings, emulator, tmp_path, **env: str) -> subprocess.Popen:
    """``graphhook worker`` (the Procfile's command) as its own process, logging to ``tmp_path/worker.log``."""
    log = open(tmp_path / "worker.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "graphhook", "worker"],
                            env={**worker_env(live_settings, emulator), **env}, cwd=ROOT, stdout=log, stderr=log)


@pytest.fixture
def deferring(ctx):
    ctx.graph.defer_throttled = True
    runtime.install(ctx)
    yield ctx


def test_one_process_runs_several_jobs_at_the_same_moment(settings, redis_client):
    concurrent_jobs.BARRIER = threading.Barrier(4)
    queue = jobformat.queue(settings.queue_name, redis_client)
    jobs = [queue.enqueue("tests.workers.concurrent_jobs.meet", 60) for _ in range(4)]
    _worker(settings, redis_client, concurrency=4).work(burst=True)
    # Each waited at a barrier that opens only when all four wait at once: one at a time, all would fail.
    assert [job.get_status(refresh=True) for job in jobs] == ["finished"] * 4
    assert len({job.return_value() for job in jobs}) == 4  # four threads


def test_a_job_over_its_timeout_fails_as_with_rq_while_the_others_finish(settings, redis_client):
    queue = jobformat.queue(settings.queue_name, redis_client)
    stuck = queue.enqueue("tests.workers.concurrent_jobs.busy", 600, job_timeout=1)
    fine = queue.enqueue("tests.workers.concurrent_jobs.busy", 0.2)
    _worker(settings, redis_client, concurrency=2).work(burst=True)
    assert fine.get_status(refresh=True) == "finished"
    assert stuck.get_status(refresh=True) == "failed"
    assert "JobTimeoutException" in stuck.latest_result().exc_string


def test_fired_triggers_work_goes_ahead_of_a_backlog_of_fetches(ctx, settings, redis_client):
    from workers.triggers import engine, webhooks
    from workers.triggers.model import WebhookConfig

    queue = jobformat.queue(settings.queue_name, redis_client)
    backlog = [queue.enqueue("tests.workers.concurrent_jobs.note", f"fetch {i}").id for i in range(5)]
    hook = WebhookConfig(name="soar", url="https://127.0.0.1:1/x", secret_env="S", secret="s", backoff=(1, 2))
    delivery = webhooks.enqueue(redis_client, settings.queue_name, hook, {"id": "event-1"})
    resumed = engine.schedule_resume(ctx, {"id": "m", "mailbox": "a@contoso.com"}, ["rule"])
    assert queue.job_ids == [resumed, delivery, *backlog]  # a campaign's fetches wait; fired triggers do not
    job = jobformat.fetch(delivery, redis_client)
    assert job.enqueue_at_front_on_retry  # nor do their retries
    concurrent_jobs.ORDER.clear()
    queue.empty()
    for i in range(3):
        queue.enqueue("tests.workers.concurrent_jobs.note", f"fetch {i}")
    queue.enqueue("tests.workers.concurrent_jobs.note", "webhook", at_front=True)
    _worker(settings, redis_client, concurrency=1).work(burst=True)
    assert concurrent_jobs.ORDER == ["webhook", "fetch 0", "fetch 1", "fetch 2"]


def test_a_mailbox_with_a_backlog_does_not_hold_up_another(emulator, settings, redis_client, deferring):
    emulator.latency = 0.2  # Graph's own pace: a mailbox's jobs take a while each
    busy, quiet = emulator.add_user("busy@contoso.com"), emulator.add_user("quiet@contoso.com")
    queue = jobformat.queue(settings.queue_name, redis_client)
    for i in range(10):
        message = emulator.deliver("busy@contoso.com", {"subject": f"busy {i}"})
        queue.enqueue(PROCESS, [_item(settings, busy.id, message["id"])])
    message = emulator.deliver("quiet@contoso.com", {"subject": "quiet"})
    queue.enqueue(PROCESS, [_item(settings, quiet.id, message["id"])])  # queued behind all ten
    worker = _worker(settings, redis_client, concurrency=4, per_mailbox=2)
    worker.work(burst=True)
    subjects = _subjects(redis_client)
    assert sorted(subjects) == sorted([f"busy {i}" for i in range(10)] + ["quiet"])
    # At most two of the busy mailbox's jobs run at once; the quiet mailbox's job took a free thread at once,
    # so it fired among the first, not after the busy mailbox's backlog.
    assert subjects.index("quiet") < 4, subjects
    assert emulator.throttle.stats()["overConcurrency"] == 0


def test_a_throttled_mailbox_is_deferred_until_its_retry_after_and_fires_once(emulator, settings, redis_client,
                                                                            deferring):
    slow, other = emulator.add_user("slow@contoso.com"), emulator.add_user("other@contoso.com")
    throttled = emulator.deliver("slow@contoso.com", {"subject": "throttled"})
    fine = emulator.deliver("other@contoso.com", {"subject": "unaffected"})
    emulator.faults.add(FaultRule(category="graph", status=429, count=1, retry_after=2, path=throttled["id"]))
    queue = jobformat.queue(settings.queue_name, redis_client)
    job = queue.enqueue(PROCESS, [_item(settings, slow.id, throttled["id"])])
    queue.enqueue(PROCESS, [_item(settings, other.id, fine["id"])])
    worker = _worker(settings, redis_client)
    worker.work(burst=True)
    # The other mailbox went on; the throttled job waits in RQ's schedule, not in a thread, its retries unspent.
    assert _subjects(redis_client) == ["unaffected"]
    job.refresh()
    assert job.get_status() == "scheduled" and job.meta["deferrals"] == 1 and worker.deferred == 1
    assert job.id in queue.scheduled_job_registry and queue.failed_job_registry.count == 0
    assert job.retries_left is None or job.retries_left == 5

    def run_when_due() -> bool:
        _worker(settings, redis_client).work(burst=True, with_scheduler=True)  # enqueues what is due, runs it
        return "throttled" in _subjects(redis_client)

    wait_for(run_when_due, timeout=60)
    assert sorted(_subjects(redis_client)) == ["throttled", "unaffected"]
    assert emulator.throttle.stats()["early"] == 0  # nothing asked that mailbox before its Retry-After
    assert job.get_status(refresh=True) == "finished"


def test_warm_shutdown_hands_back_a_job_that_outlives_the_grace_period(live_settings, emulator, redis_client,
                                                                      tmp_path):
    proc = _worker_process(live_settings, emulator, tmp_path, GRAPHHOOK_WORKER_SHUTDOWN_SECONDS="1")
    try:
        queue = jobformat.queue(live_settings.queue_name, redis_client)
        long = queue.enqueue("tests.workers.concurrent_jobs.linger", 600, "long-started")
        wait_for(lambda: redis_client.get("long-started") == b"started", timeout=60)
        assert stop_process(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    # Back at the front of its queue, as if never taken: another worker runs it (its claims carry on).
    assert long.get_status(refresh=True) == "queued" and queue.job_ids == [long.id]
    assert queue.started_job_registry.count == 0
    assert "handed 0 waiting and 1 running job(s) back" in (tmp_path / "worker.log").read_text()


def test_warm_shutdown_lets_a_short_job_finish(live_settings, emulator, redis_client, tmp_path):
    proc = _worker_process(live_settings, emulator, tmp_path, GRAPHHOOK_WORKER_SHUTDOWN_SECONDS="120")
    try:
        queue = jobformat.queue(live_settings.queue_name, redis_client)
        short = queue.enqueue("tests.workers.concurrent_jobs.linger", 2, "short-started")
        wait_for(lambda: redis_client.get("short-started") == b"started", timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert short.get_status(refresh=True) == "finished" and short.return_value() == "done"


@pytest.mark.parametrize("value", ["0", "257", "-3"])
def test_a_bad_concurrency_is_refused_with_what_to_type(value, capsys):
    from graphhook.cli import main

    assert main(["worker", "--concurrency", value]) == 2
    assert "--concurrency must be between 1 and 256" in capsys.readouterr().err


def test_concurrency_from_the_environment_is_checked(monkeypatch, capsys):
    from graphhook.cli import main

    monkeypatch.setenv("GRAPHHOOK_WORKER_CONCURRENCY", "1000")
    assert main(["worker"]) == 2
    assert "GRAPHHOOK_WORKER_CONCURRENCY must be at most 256" in capsys.readouterr().err
    os.environ.pop("GRAPHHOOK_WORKER_CONCURRENCY", None)


def test_the_scheduler_is_a_thread_so_a_killed_worker_leaves_nothing_behind(live_settings, emulator, redis_client,
                                                                           tmp_path):
    from datetime import timedelta

    from tests.deploy.test_worker_shutdown import process_tree

    proc = _worker_process(live_settings, emulator, tmp_path)
    try:
        queue = jobformat.queue(live_settings.queue_name, redis_client)
        # Retries and deferred jobs come back through the scheduler, running inside the worker.
        later = queue.enqueue_in(timedelta(seconds=1), "tests.workers.concurrent_jobs.linger", 0, "scheduled")
        wait_for(lambda: later.get_status(refresh=True) == "finished", timeout=60)
        assert process_tree(proc.pid) == [proc.pid]  # no forked scheduler to outlive the worker
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Nothing of the dead worker still holds a blocking dequeue: a new job stays on the queue for the next worker.
    job = queue.enqueue("tests.workers.concurrent_jobs.note", "after")
    wait_for(lambda: not [c for c in redis_client.client_list() if c.get("cmd") in ("blmove", "blpop")], timeout=30)
    assert queue.job_ids == [job.id] and queue.intermediate_queue.get_job_ids() == []
