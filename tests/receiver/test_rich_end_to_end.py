"""Rich notifications through real RQ worker processes: decrypted and acted on with the right key,
dropped (never fetched, never triggered) without it."""

from __future__ import annotations

import json

from graphhook.core import jobformat, keys
from tests.conftest import wait_for


def test_worker_decrypts_then_acts(emulator, redis_client, live_settings, rich_subscription, start_worker, monkeypatch):
    monkeypatch.setenv("GRAPHHOOK_ENCRYPTION_KEYS", rich_subscription.keys)
    start_worker()
    message = emulator.deliver("alice@contoso.com", {"subject": "Invoice 42", "from": "bob@fabrikam.com"})
    events = wait_for(lambda: redis_client.lrange(keys.EVENTS, 0, -1), timeout=60)
    assert json.loads(events[0])["email"]["id"] == message["_immutableId"]


def test_worker_without_the_key_acts_on_nothing(emulator, redis_client, live_settings, rich_subscription,
                                                start_worker, monkeypatch):
    monkeypatch.setenv("GRAPHHOOK_ENCRYPTION_KEYS", "")
    start_worker()
    message = emulator.deliver("alice@contoso.com", {"subject": "Invoice 43", "from": "bob@fabrikam.com"})
    queue = jobformat.queue(live_settings.queue_name, redis_client)
    wait_for(lambda: queue.finished_job_registry.count + queue.failed_job_registry.count >= 1, timeout=60)
    assert redis_client.lrange(keys.EVENTS, 0, -1) == []
    assert not [r for r in emulator.request_log if message["id"] in r["path"] or message["_immutableId"] in r["path"]]
