"""Exactly once: duplicates, concurrent duplicates, retries, updates and deletions fire created triggers once."""

from __future__ import annotations

import json

import pytest

from graphhook.core import jobformat, keys
from tests.conftest import InProcessWorker, wait_for
from workers import jobs, runtime
from workers.subscriptions import operations


def _item(settings, user_id: str, message_id: str, change: str = "created", etag: str = 'W/"1"') -> dict:
    return {"subscriptionId": "sub-jobs", "tenantId": settings.tenant_id, "changeType": change,
            "resource": f"Users/{user_id}/Messages/{message_id}",
            "resourceData": {"id": message_id, "@odata.etag": etag}}


def _events(redis_client) -> list[dict]:
    return [json.loads(e) for e in redis_client.lrange(keys.EVENTS, 0, -1)]


@pytest.fixture
def installed(ctx):
    runtime.install(ctx)
    yield ctx


def test_duplicate_deliveries_to_real_workers_fire_one_trigger_each(emulator, live_settings, redis_client, start_worker):
    emulator.delivery.options.duplicate_rate = 1.0  # every notification is POSTed twice
    emulator.add_user("secops@contoso.com")
    ctx = runtime.build(live_settings, redis_client)
    sub = operations.create(ctx.graph, redis_client, live_settings, "secops@contoso.com", "inbox")
    start_worker()
    start_worker()
    sent = [emulator.deliver("secops@contoso.com", {"subject": f"dup {i}"})["_immutableId"] for i in range(3)]
    wait_for(lambda: len(_events(redis_client)) >= 3, timeout=60)
    # Let every duplicate reach the receiver and the workers before counting.
    wait_for(lambda: sum(s.delivered for s in emulator.delivery.stats.values()) >= 6 and emulator.delivery.pending() == 0)
    queue = jobformat.queue(live_settings.queue_name, redis_client)
    wait_for(lambda: queue.count == 0 and queue.started_job_registry.count == 0)
    fired = [e["email"]["id"] for e in _events(redis_client)]
    assert sorted(fired) == sorted(sent)
    assert all(e["subscriptionId"] == sub.id and e["email"]["mailbox"] == "secops@contoso.com" for e in _events(redis_client))


def test_two_jobs_with_the_same_notification_at_the_same_moment_fire_once(emulator, live_settings, redis_client,
                                                                         start_worker):
    user = emulator.add_user("frank@contoso.com")
    message = emulator.deliver("frank@contoso.com", {"subject": "race"})
    start_worker()
    start_worker()
    wait_for(lambda: len(redis_client.smembers(f"rq:workers:{live_settings.queue_name}")) >= 2, timeout=30)
    queue = jobformat.queue(live_settings.queue_name, redis_client)
    first = queue.enqueue("workers.jobs.process_notifications", [_item(live_settings, user.id, message["id"])])
    second = queue.enqueue("workers.jobs.process_notifications", [_item(live_settings, user.id, message["id"])])
    wait_for(lambda: first.get_status(refresh=True) == "finished" and second.get_status(refresh=True) == "finished")
    assert len(_events(redis_client)) == 1
    results = sorted((first.return_value()["processed"], second.return_value()["duplicates"]))
    assert results == [1, 1] or sorted((first.return_value()["duplicates"], second.return_value()["processed"])) == [1, 1]


def test_a_failed_job_is_retried_and_fires_once(emulator, settings, redis_client, installed):
    from emulator.faults import FaultRule

    user = emulator.add_user("gina@contoso.com")
    message = emulator.deliver("gina@contoso.com", {"subject": "flaky"})
    emulator.faults.add(FaultRule(category="graph", status=500, count=1, path=message["id"]))
    queue = jobformat.queue(settings.queue_name, redis_client)
    job = queue.enqueue("workers.jobs.process_notifications", [_item(settings, user.id, message["id"])])
    worker = InProcessWorker([queue], connection=redis_client)
    worker.work(burst=True)  # first attempt: Graph answers 500, the job fails and schedules its own retry
    job.refresh()
    assert job.retries_left == len(jobs.RETRY_INTERVALS) - 1 and _events(redis_client) == []
    # The retry is scheduled 5 s out; move it to the queue now instead of waiting.
    queue.scheduled_job_registry.remove(job)
    queue.enqueue_job(job)
    worker.work(burst=True)
    assert [e["email"]["subject"] for e in _events(redis_client)] == ["flaky"]
    worker.work(burst=True)
    assert len(_events(redis_client)) == 1


def test_a_retry_of_the_same_job_takes_over_its_claim_but_another_job_does_not(emulator, settings, redis_client,
                                                                            installed):
    user = emulator.add_user("hank@contoso.com")
    message = emulator.deliver("hank@contoso.com", {"subject": "crashed before"})
    queue = jobformat.queue(settings.queue_name, redis_client)
    worker = InProcessWorker([queue], connection=redis_client)
    other = queue.enqueue("workers.jobs.process_notifications", [_item(settings, user.id, message["id"])])
    same = queue.enqueue("workers.jobs.process_notifications", [_item(settings, user.id, message["id"])])
    queue.remove(other)
    # A previous attempt of `same` died holding the claim (worker killed mid-fetch).
    redis_client.set(jobs.marker(user.id, message["id"]), f"claimed:{same.id}", ex=600)
    worker.work(burst=True)
    assert same.return_value()["processed"] == 1 and len(_events(redis_client)) == 1
    queue.enqueue_job(other)
    worker.work(burst=True)
    assert other.return_value()["duplicates"] == 1 and len(_events(redis_client)) == 1


def test_updated_does_not_refire_created_and_deleted_is_recorded_not_fetched(emulator, settings, redis_client,
                                                                              installed):
    user = emulator.add_user("ivy@contoso.com")
    message = emulator.deliver("ivy@contoso.com", {"subject": "once"})
    assert jobs.process_notifications([_item(settings, user.id, message["id"])])["processed"] == 1
    counts = jobs.process_notifications([_item(settings, user.id, message["id"], "updated", 'W/"2"'),
                                         _item(settings, user.id, message["id"], "updated", 'W/"2"'),
                                         _item(settings, user.id, message["id"])])
    assert counts["updated"] == 1 and counts["duplicates"] == 2 and counts["processed"] == 0
    gets_before = len([r for r in emulator.request_log if message["id"] in r["path"]])
    counts = jobs.process_notifications([_item(settings, user.id, message["id"], "deleted")] * 2)
    assert counts["deleted"] == 1 and counts["duplicates"] == 1
    assert len([r for r in emulator.request_log if message["id"] in r["path"]]) == gets_before
    assert redis_client.get(jobs.marker(user.id, message["id"], "deleted")) == b"deleted"
    assert redis_client.ttl(jobs.marker(user.id, message["id"])) > 6 * 24 * 3600  # the 7-day window
    assert len(_events(redis_client)) == 1


def test_a_delta_resync_item_names_the_mailbox_like_push_and_shares_its_marker(emulator, settings, redis_client,
                                                                             installed):
    user = emulator.add_user("jo@contoso.com")
    pushed = emulator.deliver("jo@contoso.com", {"subject": "pushed"})
    missed = emulator.deliver("jo@contoso.com", {"subject": "missed"})
    redis_client.hset(keys.subscription("sub-jobs"), mapping={"mailbox": "jo@contoso.com", "folder": "inbox"})
    jobs.process_notifications([_item(settings, user.id, pushed["id"])])
    delta = {**_item(settings, user.id, missed["id"]), "subscriptionId": "delta"}
    again = {**_item(settings, user.id, pushed["id"]), "subscriptionId": "delta"}  # overlap with push
    counts = jobs.process_notifications([delta, again])
    assert counts["processed"] == 1 and counts["duplicates"] == 1
    assert [(e["email"]["subject"], e["email"]["mailbox"]) for e in _events(redis_client)] == [
        ("pushed", "jo@contoso.com"), ("missed", "jo@contoso.com")]


def test_a_worker_killed_mid_fetch_has_its_job_retried_and_the_trigger_fires_once(
        emulator, live_settings, redis_client, start_worker):
    import time

    from emulator.faults import FaultRule

    user = emulator.add_user("kai@contoso.com")
    message = emulator.deliver("kai@contoso.com", {"subject": "survives a crash"})
    emulator.faults.add(FaultRule(category="graph", status=None, delay=3.0, count=1, path=message["id"]))
    victim = start_worker("--simple")  # runs jobs in its own process: killing it kills the job
    queue = jobformat.queue(live_settings.queue_name, redis_client)
    job = queue.enqueue("workers.jobs.process_notifications", [_item(live_settings, user.id, message["id"])])
    wait_for(lambda: redis_client.get(jobs.marker(user.id, message["id"])) == f"claimed:{job.id}".encode())
    victim.kill()
    victim.wait(10)
    assert job.get_status(refresh=True) == "started" and _events(redis_client) == []
    # RQ's maintenance finds the abandoned job; the job had declared its own retry policy.
    queue.started_job_registry.cleanup(timestamp=time.time() + 3600)
    assert job.get_status(refresh=True) in ("scheduled", "queued")
    queue.scheduled_job_registry.remove(job)
    queue.enqueue_job(job)  # do not wait out the 5 s retry interval
    start_worker("--simple")
    wait_for(lambda: job.get_status(refresh=True) == "finished", timeout=60)
    assert job.return_value()["processed"] == 1
    assert [e["email"]["subject"] for e in _events(redis_client)] == ["survives a crash"]


def test_several_new_messages_in_one_job_are_fetched_in_one_batch(emulator, settings, redis_client, installed,
                                                                  monkeypatch):
    import hashlib
    import os

    from workers.records import attachments

    monkeypatch.setattr(attachments, "INLINE_JSON", 64 * 1024)  # the batch reply is streamed, not loaded whole
    user = emulator.add_user("lou@contoso.com")
    big = os.urandom(400_000)
    sent = [emulator.deliver("lou@contoso.com", {"subject": f"burst {i}", "attachments": [
        {"kind": "file", "name": f"f{i}.bin", "content": big if i == 2 else b"small"}]}) for i in range(5)]
    emulator.request_log.clear()
    counts = jobs.process_notifications([_item(settings, user.id, m["id"]) for m in sent])
    assert counts["processed"] == 5
    direct = [r for r in emulator.request_log if not r.get("batch") and r["path"].startswith("/v1.0/")]
    assert [r["path"] for r in direct] == ["/v1.0/$batch"]  # one round trip for five messages
    events = _events(redis_client)
    assert [e["email"]["subject"] for e in events] == [f"burst {i}" for i in range(5)]
    assert events[2]["email"]["attachments"][0]["sha256"] == hashlib.sha256(big).hexdigest()
