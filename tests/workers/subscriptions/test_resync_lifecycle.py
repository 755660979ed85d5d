"""No mail lost: lifecycle events and delta resync, through the real receiver and real RQ workers."""

from __future__ import annotations

import http.server
import json
import ssl
import threading

import pytest

from graphhook.core import jobformat, keys
from graphhook.core.errors import GraphError
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


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every GET with an empty delta page and records the Authorization header it was sent."""

    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 — http.server's name
        self.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"value": [], "@odata.deltaLink": f"https://{self.headers['Host']}/delta?$deltatoken=x"})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def foreign_server(emulator):
    """An HTTPS server on 127.0.0.1 (another port than the emulator's), trusted like it: a certificate of its CA."""
    pair = emulator.ca.issue("foreign")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("Recorder", (_Recorder,), {"seen": []}))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pair.cert_path, pair.key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.mark.parametrize("link", [
    "https://127.0.0.1:{port}/v1.0/users/{user}/mailFolders/inbox/messages/delta?$deltatoken=planted",
    "https://{graph}@127.0.0.1:{port}/v1.0/delta?$deltatoken=planted",  # starts with the Graph host
    "https://localhost:{port}/v1.0/delta?$deltatoken=planted",
    "http://127.0.0.1:{port}/v1.0/delta?$deltatoken=planted",
])
def test_a_planted_delta_link_to_another_host_is_refused_and_gets_no_token(
        emulator, live_settings, redis_client, foreign_server, link):
    emulator.add_user("alice@contoso.com")
    user = emulator.mail.user("alice@contoso.com")
    ctx = runtime.build(live_settings, redis_client)
    graph = live_settings.graph_url.split("/")[2]
    planted = link.format(port=foreign_server.server_address[1], user=user.id, graph=graph)
    redis_client.hset(keys.delta(user.id, "inbox"), mapping={"deltaLink": planted, "lastSync": "2026-01-01T00:00:00Z"})

    with pytest.raises(GraphError) as refused:
        resync_folder(ctx, "alice@contoso.com", "inbox", user.id, now=emulator.clock.now())

    assert refused.value.code == "LinkOutsideGraph"
    assert "only links on GRAPH_URL's host are followed" in str(refused.value) and "deltatoken" not in str(refused.value)
    assert foreign_server.RequestHandlerClass.seen == []  # nothing sent there, least of all the token
    assert redis_client.hget(keys.delta(user.id, "inbox"), "deltaLink").decode() == planted  # nothing recorded


def test_links_are_compared_parsed_by_both_parsers():
    """A link the two URL parsers read differently is refused: requests would connect where urllib3 says."""
    from workers.graph import links

    graph = links.origin("https://graph.microsoft.com/v1.0")
    assert graph == ("https", "graph.microsoft.com", 443)
    assert links.origin("https://GRAPH.microsoft.com:443/v1.0/users?$skiptoken=1") == graph
    for foreign in ("https://graph.microsoft.com.evil.example/v1.0", "https://graph.microsoft.com@evil.example/",
                    "https://evil.example\\@graph.microsoft.com/", "https://graph.microsoft.com:8443/",
                    "http://graph.microsoft.com/", "//graph.microsoft.com/", "https://graph.microsoft.com:x/"):
        assert links.origin(foreign) != graph, foreign


def _lifecycle_item(record, event):
    return {"subscriptionId": record.id, "tenantId": record.tenant_id, "clientState": record.client_state,
            "lifecycleEvent": event, "subscriptionExpirationDateTime": record.expiration}


def _queued_message_ids(queue):
    return sorted(item["resourceData"]["id"] for job in queue.jobs
                  if job.func_name == "workers.jobs.process_notifications" for item in job.args[0])


def test_a_retried_subscription_removed_job_still_resyncs_the_gap(emulator, live_settings, redis_client):
    """The replacement was created but the resync failed: RQ retries the job, and the gap's mail is still found."""
    from emulator.faults import FaultRule
    from workers.subscriptions.lifecycle import handle

    ctx, record = _subscribe(emulator, live_settings, redis_client)
    queue = jobformat.queue(live_settings.queue_name, redis_client)
    emulator.subscriptions.items.pop(record.id)  # Graph removed it...
    emulator.mail.add_message("alice@contoso.com", {"subject": "in the gap", "from": "x@example.com"})
    emulator.faults.add(FaultRule(category="graph", status=500, count=1, path=r"/delta"))

    with pytest.raises(GraphError):  # the first attempt replaced the subscription, then its resync failed
        handle(ctx, _lifecycle_item(record, "subscriptionRemoved"))
    (new,) = registry.all_records(redis_client)
    assert new.id != record.id and _queued_message_ids(queue) == []

    assert handle(ctx, _lifecycle_item(record, "subscriptionRemoved")) == "resynced"  # RQ's retry of the same job
    assert len(_queued_message_ids(queue)) == 1  # the gap's one message (named by its immutable id)
    assert [r.id for r in registry.all_records(redis_client)] == [new.id]  # no second replacement


def test_a_resync_asked_for_while_one_runs_goes_again(emulator, live_settings, redis_client):
    """Mail that arrives after the running resync read its pages is found by its next pass, not dropped."""
    import dataclasses

    ctx, record = _subscribe(emulator, live_settings, redis_client)
    queue = jobformat.queue(live_settings.queue_name, redis_client)
    arrived = []

    class Graph:  # the real client; after the first delta page, new mail arrives and someone asks for a resync
        def __getattr__(self, name):
            return getattr(ctx.graph, name)

        def get(self, *args, **kwargs):
            page = ctx.graph.get(*args, **kwargs)
            if not arrived:
                arrived.append(emulator.mail.add_message("alice@contoso.com", {"subject": "late", "from": "x@example.com"})[2])
                asked = resync_folder(ctx, record.mailbox, "inbox", record.user_id, subscription_id=record.id)
                assert asked.mode == "skipped"
            return page

    result = resync_folder(dataclasses.replace(ctx, graph=Graph()), record.mailbox, "inbox", record.user_id,
                           subscription_id=record.id)

    assert result.mode == "incremental" and arrived and len(_queued_message_ids(queue)) == 1


def test_a_resync_asked_for_while_a_dead_process_holds_the_folder_runs_when_its_lock_lapses(
        emulator, live_settings, redis_client, start_worker):
    ctx, record = _subscribe(emulator, live_settings, redis_client)
    # A resync whose process was SIGKILLed: its lock lapses by itself, soon.
    redis_client.set(keys.resync_lock(record.user_id, "inbox"), "dead process", px=1500)
    emulator.mail.add_message("alice@contoso.com", {"subject": "while locked", "from": "x@example.com"})

    assert resync_folder(ctx, record.mailbox, "inbox", record.user_id, subscription_id=record.id).mode == "skipped"
    start_worker()

    wait_for(lambda: _subjects(redis_client) == ["while locked"], timeout=60)
