"""The status page over real HTTP: authentication, what it shows, and the CSRF-protected retry of failed jobs."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
import requests

from graphhook.core import jobformat, keys
from graphhook.core.settings import Settings
from graphhook.devserver import BackgroundServer
from receiver.app import create_app
from tests.conftest import InProcessWorker

USER, PASSWORD, TOKEN = "ops", "correct horse battery staple", "status-token-0123456789"
QUEUE = "graphhook-status-tests"
CLIENT_STATE = "client-state-that-must-not-show"


def seed(r, now: dt.datetime | None = None) -> str:
    """Three subscriptions (ok, at risk, renewal failed) expiring relative to ``now``, a synced folder, fired rules,
    handled notifications and one really failed job; returns the failed job's id."""
    now = now or dt.datetime.now(dt.timezone.utc)
    for sid, folder, hours, state, error in (
            ("sub-ok-0001", "inbox", 120, "active", ""),
            ("sub-risk-0002", "junkemail", 3, "active", ""),
            ("sub-fail-0003", "archive", 30, "renew_failed", "Graph 503 ServiceUnavailable on PATCH subscriptions")):
        r.hset(keys.subscription(sid), mapping={
            "id": sid, "clientState": CLIENT_STATE, "mailbox": "secops@contoso.com", "userId": "u-1", "folder": folder,
            "expiration": (now + dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ"), "state": state,
            "renewedAt": (now - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), "lastError": error})
        r.sadd(keys.SUBSCRIPTIONS, sid)
    r.hset(keys.delta("u-1", "inbox"), mapping={"lastSync": "2026-11-27T09:30:00Z", "deltaLink": "https://x/delta"})
    for subject, rules in (("Invoice 1001", []), ("Urgent: verify your account", ["quarantine-phishing"])):
        r.rpush(keys.EVENTS, json.dumps({"trigger": "record", "firedAt": time.time(), "rules": rules, "dryRun": [],
                                         "email": {"mailbox": "secops@contoso.com", "subject": subject,
                                                   "from": {"address": "billing@fabrikam.com"}}}))
    from workers import metrics

    metrics.notification_handled("processed", subscription_id="sub-ok-0001", message_id="AAMkAGI2-message-1",
                                 change_type="created", notification_id="n-1")
    metrics.flush(r)
    queue = jobformat.queue(QUEUE, r)
    job = queue.enqueue("graphhook.core.keys.subscription")  # raises TypeError: a genuinely failed job
    InProcessWorker([queue], connection=r).work(burst=True)
    assert queue.failed_job_registry.get_job_ids() == [job.id]
    return job.id


def status_settings(redis_url: str, **credentials: str) -> Settings:
    """Receiver settings with the given status credentials."""
    return Settings(redis_url=redis_url, tenant_id="t-1", client_id="c-1", queue_name=QUEUE, **credentials)


@pytest.fixture
def now() -> dt.datetime:
    """The served receiver's clock stands still here (whole seconds, as expiry times are stored)."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


@pytest.fixture
def served(redis_server, redis_client, now):
    """The receiver with basic auth and a bearer token for /status, over plain HTTP on loopback."""
    app = create_app(status_settings(redis_server.url, status_user=USER, status_password=PASSWORD,
                                     status_token=TOKEN), redis_client=redis_client, clock=lambda: now)
    server = BackgroundServer(app).start()
    yield server.url
    server.stop()


def test_disabled_without_credentials(redis_server, redis_client):
    app = create_app(status_settings(redis_server.url), redis_client=redis_client)
    assert app.test_client().get("/status").status_code == 404


def test_authentication_is_required(served):
    bare = requests.get(f"{served}/status", timeout=10)
    assert bare.status_code == 401 and bare.headers["WWW-Authenticate"].startswith("Basic")
    assert requests.get(f"{served}/status", auth=(USER, "wrong"), timeout=10).status_code == 401
    assert requests.get(f"{served}/status", headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 401
    assert requests.get(f"{served}/status", auth=(USER, PASSWORD), timeout=10).status_code == 200
    assert requests.get(f"{served}/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 200


def test_page_shows_health_resyncs_queues_notifications_and_failed_jobs(served, redis_client, now):
    job_id = seed(redis_client, now)
    page = requests.get(f"{served}/status", auth=(USER, PASSWORD), timeout=10)
    html = page.text
    assert page.headers["Content-Type"].startswith("text/html") and "no-store" in page.headers["Cache-Control"]
    assert "<title>(2) graphhook status</title>" in html  # two alarms: at risk and renewal failed
    assert 'data-health="at_risk"' in html and 'data-health="renew_failed"' in html and 'data-health="ok"' in html
    assert html.count('<tr class="red"') == 2
    assert f'as of <span class="mono">{now:%Y-%m-%d %H:%M:%S}Z</span>' in html
    assert ">3h 00m 00s</td>" in html  # the countdown of the one at risk, from the app's clock
    assert ">5d 00h 00m</td>" in html and ">1d 06h 00m</td>" in html  # ok, and renewal failed
    assert "Graph 503 ServiceUnavailable" in html
    assert "2026-11-27T09:30:00Z" in html  # last resync of secops@contoso.com/inbox
    assert "quarantine-phishing" in html and "Urgent: verify your account" in html
    assert "AAMkAGI2-message-1"[-16:] in html
    assert job_id in html and "graphhook.core.keys.subscription" in html and "TypeError" in html
    assert CLIENT_STATE not in html and PASSWORD not in html and TOKEN not in html


def test_retry_needs_the_form_token_and_the_same_origin(served, redis_client, now):
    job_id = seed(redis_client, now)
    page = requests.get(f"{served}/status", auth=(USER, PASSWORD), timeout=10).text
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    url = f"{served}/status/jobs/{job_id}/retry"
    same = {"Origin": served}

    assert requests.post(url, auth=(USER, PASSWORD), headers=same, timeout=10).status_code == 400  # no token
    forged = requests.post(url, auth=(USER, PASSWORD), data={"csrf": "1.deadbeef"}, headers=same, timeout=10)
    assert forged.status_code == 400
    cross = requests.post(url, auth=(USER, PASSWORD), data={"csrf": csrf}, headers={"Origin": "https://evil.example"},
                          timeout=10)
    assert cross.status_code == 403
    assert jobformat.queue(QUEUE, redis_client).failed_job_registry.count == 1

    done = requests.post(url, auth=(USER, PASSWORD), data={"csrf": csrf}, headers=same, timeout=10,
                         allow_redirects=False)
    assert done.status_code == 303 and "requeued" in done.headers["Location"]
    queue = jobformat.queue(QUEUE, redis_client)
    assert queue.failed_job_registry.count == 0 and queue.job_ids == [job_id]
    again = requests.post(url, headers={"Authorization": f"Bearer {TOKEN}"}, data={"csrf": csrf}, timeout=10,
                          allow_redirects=False)
    assert again.status_code == 303 and "not+failed" in again.headers["Location"]


def test_rq_dashboard_is_not_served_even_when_installed(served):
    """rq-dashboard reads some jobs with pickle whatever it is told (tests/core/test_jobformat.py): never mounted."""
    assert requests.get(f"{served}/status/rq/", auth=(USER, PASSWORD), timeout=10).status_code == 404
    assert "/status/rq" not in requests.get(f"{served}/status", auth=(USER, PASSWORD), timeout=10).text


def test_long_lists_keep_alarms_on_top_and_count_the_rest(served, redis_client, now, monkeypatch):
    from receiver import statusdata

    seed(redis_client, now)
    monkeypatch.setattr(statusdata, "SUBSCRIPTION_ROWS", 1)
    html = requests.get(f"{served}/status", auth=(USER, PASSWORD), timeout=10).text
    assert "<title>(2) graphhook status</title>" in html and ">3 subscriptions<" in html
    assert html.count("data-health=") == 1 and 'data-health="ok"' not in html
    assert "… and 2 more, not listed" in html
