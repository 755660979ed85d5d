"""No mail lost: lifecycle events and delta resync, through the real receiver and real RQ workers."""

from __future__ import annotations

import json

from graphhook.core import jobformat, keys
from tests.conftest import wait_for
from workers import runtime
from workers.subscriptions import registry
from workers.subscriptions.renewer import Renewer
from workers.subscriptions.resync import resync_folder


def _subjects(redis_client):
    return [json.loads(e)["email"]["subject"] for e in redis_client.lrange(keys.EVENTS, 0, -1)]


def _subscribe(emulator, live_settings, redis_client, mailbox="alice@contoso.com"):
    emulator.add_user(mailbox)
    ctx = runtime.build(live_settings, redis_client)
    Renewer(ctx, [(mailbox, "inbox")], clock=emulator.clock.now, sleep=emulator.advance).reconcile()
    (record,) = registry.all_records(redis_client)
    return ctx, record


def test_removed_subscription_is_recreated_and_gap_mail_processed_exactly_once(
        emulator, live_settings, redis_client, start_worker):
    ctx, record = _subscribe(emulator, live_settings, redis_client)
    emulator.deliver("alice@contoso.com", {"subject": "before", "from": "a@example.com"})

    emulator.lifecycle(record.id, "subscriptionRemoved")  # Graph drops it and tells our /lifecycle
    emulator.deliver("alice@contoso.com", {"subject": "in the gap", "from": "b@example.com"})
    emulator.delivery.wait_idle()
    start_worker()

    wait_for(lambda: len(emulator.subscriptions.items) == 1 and record.id not in emulator.subscriptions.items)
    wait_for(lambda: sorted(_subjects(redis_client)) == ["before", "in the gap"], timeout=60)
    (new,) = registry.all_records(redis_client)
    assert new.id != record.id and new.mailbox == "alice@contoso.com"
    # Mail after the recreation arrives by push on the new subscription, once.
    emulator.deliver("alice@contoso.com", {"subject": "after", "from": "c@example.com"})
    wait_for(lambda: "after" in _subjects(redis_client), timeout=60)
    assert sorted(_subjects(redis_client)) == ["after", "before", "in the gap"]


def test_missed_event_after_outage_recovers_every_message(emulator, live_settings, redis_client, start_worker):
    ctx, record = _subscribe(emulator, live_settings, redis_client)
    sub = emulator.subscriptions.items[record.id]
    good_url = sub.notification_url
    # A notification outage: deliveries fail and are given up at once (Graph discards after its retries).
    emulator.delivery.options.retry_window = 0
    sub.notification_url = "https://127.0.0.1:9/notifications"
    for i in range(6):
        emulator.deliver("alice@contoso.com", {"subject": f"lost {i}", "from": "x@example.com"})
    emulator.delivery.wait_idle()
    sub.notification_url = good_url
    start_worker()
    assert _subjects(redis_client) == []

    emulator.lifecycle(record.id, "missed")

    wait_for(lambda: len(_subjects(redis_client)) == 6, timeout=60)
    assert sorted(_subjects(redis_client)) == [f"lost {i}" for i in range(6)]


def test_push_and_delta_together_fire_each_message_once(emulator, live_settings, redis_client, start_worker):
    ctx, record = _subscribe(emulator, live_settings, redis_client)
    start_worker()
    for i in range(5):
        emulator.deliver("alice@contoso.com", {"subject": f"m{i}", "from": "x@example.com"})
    wait_for(lambda: len(_subjects(redis_client)) == 5, timeout=60)
    # A safety resync sees the same five messages again: they must not fire twice.
    result = resync_folder(ctx, "alice@contoso.com", "inbox", record.user_id, subscription_id=record.id,
                           now=emulator.clock.now())
    assert result.mode == "incremental" and result.enqueued == 5
    wait_for(lambda: jobformat.queue(live_settings.queue_name, redis_client).count == 0, timeout=60)
    emulator.deliver("alice@contoso.com", {"subject": "last", "from": "x@example.com"})
    wait_for(lambda: "last" in _subjects(redis_client), timeout=60)
    assert sorted(_subjects(redis_client)) == ["last", "m0", "m1", "m2", "m3", "m4"]


def test_first_sync_is_a_baseline_unless_a_backfill_window_is_asked(emulator, live_settings, redis_client):
    emulator.add_user("alice@contoso.com")
    user = emulator.mail.user("alice@contoso.com")
    old = emulator.clock.now().replace(microsecond=0)
    for i in range(3):
        emulator.mail.add_message("alice@contoso.com", {"subject": f"old {i}", "from": "x@example.com",
                                                        "receivedDateTime": (old.replace(year=old.year - 1)).strftime("%Y-%m-%dT%H:%M:%SZ")})
    emulator.mail.add_message("alice@contoso.com", {"subject": "recent", "from": "x@example.com"})
    ctx = runtime.build(live_settings, redis_client)
    queue = jobformat.queue(live_settings.queue_name, redis_client)

    import datetime as dt

    baseline = resync_folder(ctx, "alice@contoso.com", "inbox", user.id, now=emulator.clock.now() + dt.timedelta(hours=1))
    assert baseline.mode == "baseline" and baseline.enqueued == 0 and queue.count == 0

    backfill = resync_folder(ctx, "alice@contoso.com", "inbox", user.id, since=dt.timedelta(hours=24),
                             now=emulator.clock.now())
    assert backfill.enqueued == 1  # "recent", not last year's mail
    job = queue.jobs[0]
    assert job.func_name == "workers.jobs.process_notifications"
    assert job.args[0][0]["resource"].startswith(f"Users/{user.id}/Messages/")


def test_evicted_delta_token_rebaselines_without_losing_the_gap(emulator, live_settings, redis_client):
    emulator.add_user("alice@contoso.com")
    user = emulator.mail.user("alice@contoso.com")
    ctx = runtime.build(live_settings, redis_client)
    resync_folder(ctx, "alice@contoso.com", "inbox", user.id, now=emulator.clock.now())
    for i in range(3):
        emulator.mail.add_message("alice@contoso.com", {"subject": f"gap {i}", "from": "x@example.com"})
    emulator.evict_delta_tokens()  # the sync state is gone: Graph answers 410 SyncStateNotFound

    result = resync_folder(ctx, "alice@contoso.com", "inbox", user.id, now=emulator.clock.now())

    assert result.mode == "rebaseline"
    assert result.enqueued == 3
    assert any(r["status"] == 410 for r in emulator.request_log)


def test_reauthorization_required_is_answered_promptly(emulator, live_settings, redis_client, start_worker):
    ctx, record = _subscribe(emulator, live_settings, redis_client)
    start_worker()
    emulator.request_log.clear()

    emulator.lifecycle(record.id, "reauthorizationRequired")

    wait_for(lambda: any(r["path"] == f"/v1.0/subscriptions/{record.id}/reauthorize" and r["status"] == 204
                         for r in list(emulator.request_log)), timeout=60)
    assert not emulator.subscriptions.items[record.id].reauthorization_required
    # Delivery goes on: new mail still arrives by push.
    emulator.deliver("alice@contoso.com", {"subject": "still flowing", "from": "x@example.com"})
    wait_for(lambda: "still flowing" in _subjects(redis_client), timeout=60)


def test_resync_follows_every_page_to_the_delta_link(emulator, live_settings, redis_client, monkeypatch):
    import workers.subscriptions.resync as resync

    monkeypatch.setattr(resync, "PAGE_SIZE", 2)
    emulator.add_user("alice@contoso.com")
    user = emulator.mail.user("alice@contoso.com")
    ctx = runtime.build(live_settings, redis_client)
    resync_folder(ctx, "alice@contoso.com", "inbox", user.id, now=emulator.clock.now())
    for i in range(7):
        emulator.mail.add_message("alice@contoso.com", {"subject": f"p{i}", "from": "x@example.com"})

    result = resync_folder(ctx, "alice@contoso.com", "inbox", user.id, now=emulator.clock.now())

    assert result.pages >= 4 and result.enqueued == 7

