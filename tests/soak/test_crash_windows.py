"""The crash windows the soak found, pinned down one at a time: a job that dies between a side effect
and its marker, then is retried, neither loses nor repeats the trigger."""

from __future__ import annotations

import json

from emulator.seed import PHISHING
from graphhook.core import jobformat, keys
from tests.workers.triggers.test_actions import QUEUE, record_for, world  # noqa: F401 (world is a fixture)
from workers.triggers.actions import marker_key
from workers.triggers.dispatch import dispatch

ALL_MAIL_WEBHOOK = """
webhooks:
  soar:
    url: http://127.0.0.1:9/hook
    secret_env: ACTIONS_SECRET
    all_mail: true
"""


def _deliveries(redis_client) -> list:
    return [j for j in jobformat.queue(QUEUE, redis_client).jobs if j.func_name == "workers.jobs.deliver_webhook"]


def test_a_webhook_left_pending_by_a_dead_job_is_queued_by_its_retry(world, emulator, redis_client):
    world.configure(ALL_MAIL_WEBHOOK)
    message = emulator.deliver("alice@contoso.com", PHISHING)
    record = record_for(world, "alice@contoso.com", message["id"])
    key = marker_key("alice@contoso.com", record["id"], "all:webhook:soar", "0", "webhook")
    # The job died after claiming the webhook and before its delivery job was queued.
    redis_client.set(key, "pending")
    dispatch(world, record)  # the retry
    jobs = _deliveries(redis_client)
    assert len(jobs) == 1 and jobs[0].args[1]["email"]["originalId"] == record["id"]
    assert redis_client.get(key) == f"done:{jobs[0].id}".encode()


def test_a_retried_dispatch_queues_one_webhook_and_records_the_email_once(world, emulator, redis_client):
    world.configure(ALL_MAIL_WEBHOOK)
    message = emulator.deliver("alice@contoso.com", PHISHING)
    record = record_for(world, "alice@contoso.com", message["id"])
    dispatch(world, record)
    dispatch(world, record)  # the job died after dispatch, before its exactly-once marker: RQ retries it
    assert len(_deliveries(redis_client)) == 1
    events = [json.loads(e) for e in redis_client.lrange(keys.EVENTS, 0, -1)]
    assert [e["email"]["id"] for e in events] == [record["id"]]
