"""The receiver's job writer against a real Redis and RQ itself: its jobs must be RQ's jobs."""

from __future__ import annotations

import json
import uuid
import zlib

import pytest
from rq import Queue
from rq.job import JobStatus

from graphhook.core import jobformat, keys
from graphhook.core.jobformat import JobSerializer, SafeJob
from receiver import store
from receiver.store import LIFECYCLE_JOB, PROCESS_JOB, JobWriter, SubscriptionLookup
from tests.conftest import InProcessWorker

QUEUE = "graphhook-test"
CHANGE = {"subscriptionId": "sub-1", "tenantId": "t", "changeType": "created",
          "resource": "Users/u1/Messages/m1", "resourceData": {"id": "m1"}}
EVENT = {"subscriptionId": "sub-1", "tenantId": "t", "lifecycleEvent": "missed"}


def _rq_enqueued(redis_client, func, arg, description) -> SafeJob:
    """The same job enqueued the ordinary way, through RQ's Queue."""
    job = SafeJob.create(func, args=(arg,), connection=redis_client, retry=store._retry(), timeout=store.JOB_TIMEOUT,
                         description=description, serializer=JobSerializer)
    return jobformat.queue(QUEUE, redis_client).enqueue_job(job)


def test_a_written_job_reads_back_as_the_job_rq_itself_would_have_enqueued(redis_client):
    [job_id] = JobWriter(redis_client, QUEUE).persist([CHANGE], [])
    ours = jobformat.fetch(job_id, redis_client)
    theirs = jobformat.fetch(_rq_enqueued(redis_client, PROCESS_JOB, [CHANGE], ours.description).id, redis_client)
    for attribute in ("func_name", "args", "kwargs", "origin", "timeout", "retries_left", "retry_intervals",
                      "result_ttl", "failure_ttl", "ttl", "description", "meta", "dependency_ids"):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
    assert ours.get_status() == theirs.get_status() == JobStatus.QUEUED
    assert ours.enqueued_at is not None and ours.created_at is not None
    # Same hash layout: every field RQ wrote with a value, we wrote too (RQ reads a missing field as empty).
    rq_hash, our_hash = redis_client.hgetall(theirs.key), redis_client.hgetall(ours.key)
    rq_fields = {k for k, v in rq_hash.items() if v != b""}
    assert rq_fields == set(our_hash)
    # Field by field: the same bytes wherever the job is not what differs (RQ always compresses data).
    for name in rq_fields - {b"data", b"description", b"created_at", b"enqueued_at", b"last_heartbeat"}:
        assert our_hash[name] == rq_hash[name], name
    assert zlib.decompress(rq_hash[b"data"]) == our_hash[b"data"]  # small: uncompressed JSON
    assert json.loads(our_hash[b"data"]) == [PROCESS_JOB, None, [[CHANGE]], {}]
    queue = jobformat.queue(QUEUE, redis_client)
    assert queue.job_ids == [job_id, theirs.id]
    assert QUEUE in [q.name for q in Queue.all(connection=redis_client)]


def test_a_post_makes_one_job_per_mailbox_so_workers_run_mailboxes_side_by_side(redis_client):
    guid = "A1B2C3D4-0000-4000-8000-00000000000A"
    changes = [{**CHANGE, "resource": f"Users/{guid}/Messages/m{i}"} for i in range(3)]
    changes += [{**CHANGE, "resource": "Users/u2/Messages/x"}, {**CHANGE, "resource": f"users('{guid.lower()}')/messages('m9')"}]
    JobWriter(redis_client, QUEUE).persist(changes, [])
    jobs = jobformat.queue(QUEUE, redis_client).jobs
    assert sorted(len(job.args[0]) for job in jobs) == [1, 4]  # both spellings of one mailbox in one job
    by_size = {len(job.args[0]): job.args[0] for job in jobs}
    assert [c["resource"] for c in by_size[1]] == ["Users/u2/Messages/x"]


def test_changes_make_one_job_and_each_lifecycle_event_its_own(redis_client):
    ids = JobWriter(redis_client, QUEUE).persist([CHANGE, {**CHANGE, "resource": "Users/u1/Messages/m2"}],
                                                 [EVENT, {**EVENT, "lifecycleEvent": "subscriptionRemoved"}])
    jobs = jobformat.queue(QUEUE, redis_client).jobs
    assert [j.id for j in jobs] == ids
    assert [j.func_name for j in jobs] == [PROCESS_JOB, LIFECYCLE_JOB, LIFECYCLE_JOB]
    assert len(jobs[0].args[0]) == 2
    assert [j.args[0]["lifecycleEvent"] for j in jobs[1:]] == ["missed", "subscriptionRemoved"]
    assert jobs[1].description == f"{LIFECYCLE_JOB}(missed sub-1)"


def test_nothing_to_write_writes_nothing(redis_client):
    assert JobWriter(redis_client, QUEUE).persist([], []) == []
    assert redis_client.keys("*") == []


def test_large_jobs_are_compressed_and_small_ones_read_back_all_the_same(redis_client):
    many = [{**CHANGE, "resource": f"Users/u1/Messages/m{i}"} for i in range(100)]
    small_id, = JobWriter(redis_client, QUEUE).persist([CHANGE], [])
    large_id, = JobWriter(redis_client, QUEUE).persist(many, [])
    small, large = (redis_client.hget(f"rq:job:{i}", "data") for i in (small_id, large_id))
    assert small.startswith(b'["workers.jobs.')  # bare JSON, never a pickle
    assert large[:1] == b"x" and len(large) < len(str(many)) / 4  # zlib
    assert jobformat.fetch(large_id, redis_client).args == [many]  # JSON: a list, as RQ's JSONSerializer reads it
    assert jobformat.fetch(small_id, redis_client).args == [[CHANGE]]


def test_a_post_of_thousands_of_lifecycle_events_is_enqueued_whole(redis_client):
    events = [{**EVENT, "subscriptionId": f"sub-{i}"} for i in range(2500)]
    ids = JobWriter(redis_client, QUEUE).persist([], events)
    assert jobformat.queue(QUEUE, redis_client).job_ids == ids and len(ids) == 2500


def test_a_repeated_write_of_the_same_jobs_enqueues_them_once(redis_client, monkeypatch):
    """What redis-py's retry does when a reply is lost after Redis ran the script."""
    fixed = uuid.UUID("2f1e7c1a-0000-4000-8000-000000000001")
    monkeypatch.setattr(store.uuid, "uuid4", lambda: fixed)
    writer = JobWriter(redis_client, QUEUE)
    assert writer.persist([CHANGE], []) == writer.persist([CHANGE], []) == [str(fixed)]
    assert jobformat.queue(QUEUE, redis_client).job_ids == [str(fixed)]


def test_a_redis_that_forgot_the_script_gets_it_again(redis_client):
    writer = JobWriter(redis_client, QUEUE)
    writer.persist([CHANGE], [])
    redis_client.script_flush()  # what a Redis restart or failover does
    writer.persist([CHANGE], [])
    assert jobformat.queue(QUEUE, redis_client).count == 2


def test_subscriptions_are_found_after_redis_forgot_the_lookup_script(redis_client):
    redis_client.hset(keys.subscription("sub-1"), mapping={"clientState": "s" * 40, "tenantId": "t", "userId": "u1",
                                                           "rich": ""})
    lookup = SubscriptionLookup(redis_client, ttl=0)  # no cache: every find goes to Redis
    assert lookup.find(["sub-1", "nope"])["sub-1"].user_id == "u1"
    redis_client.script_flush()  # what a Redis restart or failover does
    found = lookup.find(["sub-1", "nope", "sub-1"])
    assert found["sub-1"].client_state == "s" * 40 and not found["sub-1"].rich
    assert found["nope"] is None


def test_a_queue_key_of_the_wrong_type_fails_loudly_and_enqueues_nothing(redis_client):
    redis_client.set(f"rq:queue:{QUEUE}", "not a list")
    with pytest.raises(Exception) as failure:
        JobWriter(redis_client, QUEUE).persist([CHANGE], [])
    assert "WRONGTYPE" in str(failure.value)
    assert redis_client.smembers("rq:queues") == set()


def test_an_rq_worker_runs_a_written_job(redis_client):
    """RQ's own worker loads and executes what the writer wrote."""
    job_id, = JobWriter(redis_client, QUEUE).persist([CHANGE], [])
    # Point the job at a harmless function, encoded by the writer's own encoder: the hash and data
    # format are under test here, not workers.jobs.
    redis_client.hset(f"rq:job:{job_id}", "data", store._job_data("json.dumps", [CHANGE]))
    InProcessWorker([jobformat.queue(QUEUE, redis_client)], connection=redis_client).work(burst=True)
    done = jobformat.fetch(job_id, redis_client)
    assert done.get_status() == JobStatus.FINISHED
    assert done.return_value() == json.dumps([CHANGE])


def test_timestamps_are_in_rqs_own_format(redis_client):
    from rq.utils import utcformat

    job_id, = JobWriter(redis_client, QUEUE).persist([CHANGE], [])
    job = jobformat.fetch(job_id, redis_client)
    stored = redis_client.hget(job.key, "enqueued_at").decode()
    assert stored == utcformat(job.enqueued_at) == redis_client.hget(job.key, "created_at").decode()


def test_each_thread_and_each_forked_process_writes_on_its_own_connection(redis_client):
    import multiprocessing
    import threading

    clients = store._ThreadClients(redis_client)

    def local_port(client) -> int:
        client.ping()
        return client.connection._sock.getsockname()[1]

    mine = local_port(clients.client())
    assert clients.client() is clients.client()  # kept, not checked out per command
    seen = []
    worker = threading.Thread(target=lambda: seen.append(local_port(clients.client())))
    worker.start()
    worker.join()
    assert seen and seen[0] != mine

    def in_child(queue) -> None:
        queue.put(local_port(clients.client()))

    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=in_child, args=(queue,))
    child.start()
    child_port = queue.get(timeout=30)
    child.join(timeout=30)
    assert child_port not in (mine, seen[0])  # a forked worker never writes on its parent's socket
    assert local_port(clients.client()) == mine
