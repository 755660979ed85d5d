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


def _seed_tenants(r, now: dt.datetime) -> None:
    """Contoso (two subscriptions, ok), fabrikam (one, consent revoked) and northwind (never consented: no
    subscription, only a state), as the renewer records them."""
    expiry = (now + dt.timedelta(hours=100)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for sid, tenant, mailbox in (("sub-c-1", "contoso", "alice@contoso.com"), ("sub-c-2", "contoso", "bob@contoso.com"),
                                 ("sub-f-1", "fabrikam", "carol@fabrikam.com")):
        r.hset(keys.subscription(sid), mapping={"id": sid, "clientState": CLIENT_STATE, "mailbox": mailbox, "userId": sid,
                                                "folder": "inbox", "expiration": expiry, "state": "active",
                                                "tenant": tenant, "tenantId": f"tid-{tenant}"})
        r.sadd(keys.SUBSCRIPTIONS, sid)
    at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    r.hset(keys.tenant_state("contoso"), mapping={"state": "ok", "reason": "", "at": at})
    r.hset(keys.tenant_state("fabrikam"), mapping={
        "state": "consent_missing", "at": at, "retryAt": "2030-01-01T00:00:00Z",
        "reason": "app c-1 in tenant tid-fabrikam: Graph refused its token (403 ErrorAccessDenied)"})
    r.hset(keys.tenant_state("northwind"), mapping={
        "state": "consent_missing", "at": at, "reason": "the app is not consented in this tenant (AADSTS700016)"})
    r.sadd(keys.TENANTS, "contoso", "fabrikam", "northwind")


def test_with_several_tenants_the_page_names_each_rows_tenant_and_sums_up_each_tenant(served, redis_client, now):
    _seed_tenants(redis_client, now)
    html = requests.get(f"{served}/status", auth=(USER, PASSWORD), timeout=10).text

    rows = html.split('id="tenants"', 1)[1].split("</table>", 1)[0]
    assert rows.index('data-tenant="contoso"') < rows.index('data-tenant="fabrikam"') < rows.index('data-tenant="northwind"')
    contoso, fabrikam, northwind = (rows.split(f'data-tenant="{name}"', 1)[1].split("</tr>", 1)[0]
                                    for name in ("contoso", "fabrikam", "northwind"))
    assert 'data-state="ok"' in contoso and '<td class="num">2</td>' in contoso
    assert 'data-state="consent_missing"' in fabrikam and "403 ErrorAccessDenied" in fabrikam and "2030-01-01" in fabrikam
    assert '<td class="num">1</td>' in fabrikam
    assert 'data-state="consent_missing"' in northwind and "AADSTS700016" in northwind and '<td class="num">0</td>' in northwind
    assert ">3 tenants, 2 needing attention<" in html
    subscriptions = html.split('id="subscriptions"', 1)[1].split("</table>", 1)[0]
    assert "<th>tenant</th>" in subscriptions and '<td>fabrikam</td><td>carol@fabrikam.com</td>' in subscriptions
    assert CLIENT_STATE not in html


def test_with_one_tenant_the_page_is_as_before_unless_that_tenant_needs_attention(served, redis_client, now):
    seed(redis_client, now)
    html = requests.get(f"{served}/status", auth=(USER, PASSWORD), timeout=10).text
    assert 'id="tenants"' not in html and "<th>tenant</th>" not in html
    redis_client.hset(keys.tenant_state("default"), mapping={"state": "consent_missing", "at": "2026-12-07T10:00:00Z",
                                                             "reason": "the app is not consented (AADSTS700016)"})
    redis_client.sadd(keys.TENANTS, "default")
    html = requests.get(f"{served}/status", auth=(USER, PASSWORD), timeout=10).text
    assert 'id="tenants"' in html and "AADSTS700016" in html and "<th>tenant</th>" not in html.split('id="tenants"')[0]


def test_metrics_count_subscriptions_per_tenant_and_show_each_tenants_state(served, redis_client, now):
    _seed_tenants(redis_client, now)
    text = requests.get(f"{served}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
    assert 'graphhook_tenant_subscriptions{health="ok",tenant="contoso"} 2.0' in text
    assert 'graphhook_tenant_subscriptions{health="ok",tenant="fabrikam"} 1.0' in text
    assert 'graphhook_tenant_subscriptions{health="ok",tenant="northwind"} 0.0' in text
    assert 'graphhook_tenant_state{state="ok",tenant="contoso"} 1.0' in text
    assert 'graphhook_tenant_state{state="consent_missing",tenant="contoso"} 0.0' in text
    assert 'graphhook_tenant_state{state="consent_missing",tenant="fabrikam"} 1.0' in text
    assert 'graphhook_tenant_state{state="consent_missing",tenant="northwind"} 1.0' in text
    assert 'graphhook_subscriptions{health="ok"} 3.0' in text  # the total, as before
    assert "AADSTS700016" not in text and "alice@contoso.com" not in text  # states, not reasons; no mailboxes
