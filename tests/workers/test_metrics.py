"""Worker metrics: counted in real worker processes, summed in Redis, exposed by the receiver's /metrics."""

from __future__ import annotations

import datetime as dt
import json
import logging

from prometheus_client.parser import text_string_to_metric_families

from emulator.faults import FaultRule
from graphhook.core import jobformat, keys
from graphhook.core.observe import RedisCollector
from tests.conftest import stop_process, wait_for
from workers import metrics, runtime
from workers.subscriptions import operations
from workers.subscriptions.renewer import Renewer

MAILBOX = "metrics@contoso.com"
DAY = 24 * 3600


def scrape(receiver, emulator) -> dict[tuple[str, tuple], float]:
    """The receiver's metrics (what its private listener serves) as {(sample name, sorted labels): value}."""
    text = receiver.app.config["METRICS"].render()[0].decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples, name: str, **labels: str) -> float:
    """Sum over every sample of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def test_counts_from_two_worker_processes_add_up_on_the_receiver(emulator, live_settings, redis_client, receiver,
                                                                 start_worker):
    emulator.add_user(MAILBOX)
    ctx = runtime.build(live_settings, redis_client)
    operations.create(ctx.graph, redis_client, live_settings, MAILBOX, "inbox")

    def fired() -> int:
        return redis_client.llen(keys.EVENTS)

    # A non-forking worker process handles three messages, then stops; a forking one (its work horses
    # flush their own counts) handles two more.
    first = start_worker("--simple")
    for i in range(3):
        emulator.deliver(MAILBOX, {"subject": f"first {i}", "from": "a@fabrikam.com", "body": "x"})
    wait_for(lambda: fired() == 3, timeout=60)
    stop_process(first)
    start_worker()
    for i in range(2):
        emulator.deliver(MAILBOX, {"subject": f"second {i}", "from": "a@fabrikam.com", "body": "x"})
    wait_for(lambda: fired() == 5, timeout=60)
    # A job that raises: counted as a failure under its function name.
    jobformat.queue(live_settings.queue_name, redis_client).enqueue("graphhook.core.keys.subscription")
    wait_for(lambda: total(scrape(receiver, emulator), "graphhook_job_failures_total") == 1, timeout=30)

    samples = scrape(receiver, emulator)
    assert value(samples, "graphhook_notifications_processed_total", outcome="processed", tenant="default") == 5
    assert value(samples, "graphhook_triggers_fired_total", rule="record", tenant="default") == 5
    assert value(samples, "graphhook_notification_to_trigger_seconds_count") == 5
    assert 0 < value(samples, "graphhook_notification_to_trigger_seconds_sum") < 5 * 60
    ok_jobs = value(samples, "graphhook_jobs_total", function="workers.jobs.process_notifications", outcome="ok")
    assert ok_jobs >= 2  # at least one job per worker process
    assert value(samples, "graphhook_job_seconds_count", function="workers.jobs.process_notifications") == ok_jobs
    assert value(samples, "graphhook_job_failures_total", function="graphhook.core.keys.subscription") == 1
    assert value(samples, "graphhook_jobs_total", function="graphhook.core.keys.subscription", outcome="failed") == 1
    # Every message was fetched from Graph by a worker; both processes shared one token from the cache.
    assert total(samples, "graphhook_graph_requests_total", method="GET", status="200") >= 5
    assert total(samples, "graphhook_token_acquisitions_total", outcome="ok") <= 2
    # Queue depths and subscriptions are read at scrape time.
    assert value(samples, "graphhook_queue_jobs", queue=live_settings.queue_name, state="failed") == 1
    assert value(samples, "graphhook_subscriptions", health="ok") == 1
    assert value(samples, "graphhook_subscription_soonest_expiry_seconds") > 2 * DAY
    assert not [n for (n, labels) in samples if MAILBOX in dict(labels).values()]  # no mailbox by default
    # The status page's "recent notifications": newest first, each with the job that handled it.
    recent = [json.loads(x) for x in redis_client.lrange(metrics.RECENT, 0, -1)]
    assert [r["outcome"] for r in recent] == ["processed"] * 5 and all(r["job"] for r in recent)
    assert recent[0]["at"] >= recent[-1]["at"]


def test_throttling_is_counted_by_status(emulator, settings, redis_client):
    ctx = runtime.build(settings, redis_client)
    emulator.add_user(MAILBOX)
    emulator.faults.add(FaultRule(category="graph", status=429, count=2, retry_after=0.0, method="GET"))
    metrics.flush(redis_client)  # start from what earlier code in this process counted
    before = _collected(redis_client)
    ctx.graph.get(f"users/{MAILBOX}/mailFolders/inbox/messages")
    assert metrics.flush(redis_client)
    after = _collected(redis_client)
    assert after[("graphhook_graph_throttled_total", (("status", "429"),))] - \
        before.get(("graphhook_graph_throttled_total", (("status", "429"),)), 0) == 2
    assert after[("graphhook_graph_requests_total", (("method", "GET"), ("status", "200")))] - \
        before.get(("graphhook_graph_requests_total", (("method", "GET"), ("status", "200"))), 0) == 1


def _collected(r, now=None, detail=False) -> dict[tuple[str, tuple], float]:
    margin = dt.timedelta(days=1)
    collector = RedisCollector(r, margin=margin, detail=detail, **({"clock": now} if now else {}))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in collector.collect() for s in family.samples}


def test_failed_renewal_close_to_expiry_logs_an_error_and_turns_red(emulator, live_settings, redis_client, caplog):
    emulator.add_user(MAILBOX)
    desired = [(MAILBOX, "inbox")]
    ctx = runtime.build(live_settings, redis_client)
    Renewer(ctx, desired, clock=emulator.clock.now, sleep=emulator.advance).reconcile()
    assert _collected(redis_client, emulator.clock.now)[("graphhook_subscriptions", (("health", "ok"),))] == 1

    emulator.advance(6.7 * DAY)  # about 7 hours left: the renewer must renew now, and Graph refuses
    emulator.faults.add(FaultRule(category="subscriptions", status=500, count=100, method="PATCH"))
    redis_client.delete(keys.TOKEN_CACHE)  # tokens from before the time jump are expired at the emulator
    ctx = runtime.build(live_settings, redis_client)
    with caplog.at_level(logging.ERROR, logger="graphhook.metrics"):
        report = Renewer(ctx, desired, clock=emulator.clock.now, sleep=emulator.advance).reconcile()

    assert report.failed == 1
    alarms = [r for r in caplog.records if r.name == "graphhook.metrics" and r.levelno == logging.ERROR]
    assert len(alarms) == 1 and MAILBOX in alarms[0].getMessage() and "renew_failed" in alarms[0].getMessage()
    seen = _collected(redis_client, emulator.clock.now)
    assert seen[("graphhook_subscriptions", (("health", "renew_failed"),))] == 1
    assert seen[("graphhook_subscriptions", (("health", "ok"),))] == 0
    assert seen[("graphhook_subscription_alarms_total", ())] == 1
    assert 0 < seen[("graphhook_subscription_soonest_expiry_seconds", ())] < 12 * 3600
    detail = _collected(redis_client, emulator.clock.now, detail=True)  # GRAPHHOOK_METRICS_SUBSCRIPTION_DETAIL
    assert detail[("graphhook_subscription_alarms_total", (("folder", "inbox"), ("mailbox", MAILBOX)))] == 1
    (expiry,) = [v for (n, ls), v in detail.items() if n == "graphhook_subscription_expiry_seconds"]
    assert 0 < expiry < 12 * 3600


def test_worker_metrics_are_exposed_once_in_gunicorn_multiprocess_mode(redis_server, redis_client, tmp_path,
                                                                         monkeypatch):
    from graphhook.core.settings import Settings
    from receiver.app import create_app

    metrics.flush(redis_client)
    metrics.triggers_fired(["quarantine-phishing"], notified_at=None)
    assert metrics.flush(redis_client)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    app = create_app(Settings(redis_url=redis_server.url, tenant_id="t", client_id="c"), redis_client=redis_client)
    text = app.config["METRICS"].render()[0].decode()
    assert text.count('graphhook_triggers_fired_total{rule="quarantine-phishing",tenant=""} 1.0') == 1
    assert text.count("# TYPE graphhook_queue_jobs gauge") == 1


def test_deferred_jobs_and_throttled_mailboxes_are_visible(emulator, live_settings, redis_client, receiver,
                                                            start_worker):
    user = emulator.add_user(MAILBOX)
    message = emulator.deliver(MAILBOX, {"subject": "throttled", "from": "a@fabrikam.com"})
    emulator.faults.add(FaultRule(category="graph", status=429, count=1, retry_after=60, path=message["id"]))
    start_worker()
    queue = jobformat.queue(live_settings.queue_name, redis_client)
    job = queue.enqueue("workers.jobs.process_notifications", [{
        "subscriptionId": "s", "tenantId": live_settings.tenant_id, "changeType": "created",
        "resource": f"Users/{user.id}/Messages/{message['id']}", "resourceData": {"id": message["id"]}}])
    wait_for(lambda: job.get_status(refresh=True) == "scheduled", timeout=60)
    samples = scrape(receiver, emulator)
    assert value(samples, "graphhook_mailboxes_throttled") == 1
    wait_for(lambda: value(scrape(receiver, emulator), "graphhook_jobs_total",
                           function="workers.jobs.process_notifications", outcome="deferred") == 1, timeout=30)
    assert value(scrape(receiver, emulator), "graphhook_queue_jobs", queue=live_settings.queue_name,
                 state="scheduled") == 1
    assert total(scrape(receiver, emulator), "graphhook_job_failures_total") == 0  # waiting is not failing


def test_counts_written_before_the_tenant_label_still_show_with_an_empty_tenant(redis_client):
    from graphhook.core import observe

    redis_client.hset(observe.key("graphhook_notifications_processed"), "processed", 7)  # an older worker's field
    metrics.flush(redis_client)
    metrics.notification_handled("processed", subscription_id="s", tenant="contoso")
    metrics.triggers_fired([], tenant="contoso")
    assert metrics.flush(redis_client)
    seen = _collected(redis_client)
    assert seen[("graphhook_notifications_processed_total", (("outcome", "processed"), ("tenant", "")))] == 7
    assert seen[("graphhook_notifications_processed_total", (("outcome", "processed"), ("tenant", "contoso")))] == 1
    assert seen[("graphhook_triggers_fired_total", (("rule", "record"), ("tenant", "contoso")))] == 1
