"""Whoever can write Redis must not run code in our processes: a pickled job is refused, never unpickled.

An attacker with Redis access plants RQ jobs in pickle form (RQ's default) whose unpickling creates a
file. Neither the real worker process (``graphhook worker --burst``) nor the receiver's ``/status``
page (and rq-dashboard under it) may unpickle them; the file must never appear. A job queued in
pickle form by the version before (the upgrade) is refused the same way: it lands in the failed
registry, once, with a log line that names it — not retried, not lost silently.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from rq import Queue, Retry
from rq.job import Job

from graphhook.core import jobformat
from graphhook.core.settings import Settings
from receiver.app import create_app
from tests.conftest import worker_env

USER, PASSWORD = "ops", "correct horse battery staple"


class Payload:
    """Unpickling this creates ``marker`` (what an attacker's pickle would do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def plant(r, queue_name: str, marker: Path, *, failed: bool = False) -> str:
    """A job written the way RQ writes one by default (pickle), with the payload as its data and meta."""
    pickled = Queue(queue_name, connection=r)  # RQ's default serializer: pickle
    job = Job.create("builtins.len", args=([],), connection=r, origin=queue_name, description="planted")
    if failed:
        job.save()
        pickled.failed_job_registry.add(job, ttl=3600)
        r.sadd(Queue.redis_queues_keys, pickled.key)  # the queue is known, as once a job was enqueued
    else:
        pickled.enqueue_job(job)
    r.hset(job.key, mapping={"data": pickle.dumps(Payload(marker)), "meta": pickle.dumps(Payload(marker))})
    return job.id


def run_worker(settings: Settings, emulator) -> subprocess.CompletedProcess:
    env = {**worker_env(settings, emulator), "GRAPHHOOK_LOG_FORMAT": "text"}
    return subprocess.run([sys.executable, "-m", "graphhook", "worker", "--burst"], env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_planted_pickle_never_runs_in_the_worker(settings, emulator, redis_client, tmp_path):
    marker = tmp_path / "pwned-by-worker"
    job_id = plant(redis_client, settings.queue_name, marker)

    proc = run_worker(settings, emulator)

    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not marker.exists()
    assert jobformat.queue(settings.queue_name, redis_client).failed_job_registry.get_job_ids() == [job_id]
    assert f"job {job_id} refused: its data is not JSON" in proc.stderr


def test_a_job_queued_in_pickle_form_before_the_upgrade_fails_once_and_says_so(settings, emulator, redis_client):
    """The upgrade: an ordinary job pickled by the old version is not run, not retried, and not lost silently."""
    old = Queue(settings.queue_name, connection=redis_client).enqueue(  # what the previous version wrote
        "workers.jobs.process_notifications", [], retry=Retry(max=3, interval=[1, 1, 1]))

    proc = run_worker(settings, emulator)

    assert proc.returncode == 0, proc.stderr[-2000:]
    queue = jobformat.queue(settings.queue_name, redis_client)
    assert queue.failed_job_registry.get_job_ids() == [old.id]
    assert queue.scheduled_job_registry.count == 0 and queue.count == 0  # no retry of what cannot be read
    assert f"job {old.id} refused: its data is not JSON" in proc.stderr
    assert "docs/workers.md#jobs-are-json" in proc.stderr


def test_a_planted_pickle_in_the_failed_registry_never_runs_in_the_status_page(redis_server, redis_client, tmp_path):
    marker = tmp_path / "pwned-by-status"
    queue = "graphhook-status-pickle"
    job_id = plant(redis_client, queue, marker, failed=True)
    app = create_app(Settings(redis_url=redis_server.url, tenant_id="t-1", client_id="c-1", queue_name=queue,
                              status_user=USER, status_password=PASSWORD), redis_client=redis_client)
    client = app.test_client()

    page = client.get("/status", auth=(USER, PASSWORD))

    assert page.status_code == 200
    assert job_id in page.text and "refused: data is not JSON" in page.text
    assert not marker.exists()
    # rq-dashboard reads a job's page with pickle whatever it is told: it is not served at all.
    for url in (f"/status/rq/0/view/job/{job_id}", f"/status/rq/0/data/job/{job_id}.json"):
        assert client.get(url, auth=(USER, PASSWORD)).status_code == 404
    assert not marker.exists()


@pytest.mark.parametrize("data", [pickle.dumps(("workers.jobs.process_notifications", None, ([],), {})),
                                  b"\x80\x05not json", b"{broken"])
def test_the_serializer_refuses_what_is_not_json(data):
    with pytest.raises(jobformat.NotJSONJob, match="not unpickled"):
        jobformat.JobSerializer.loads(data)
