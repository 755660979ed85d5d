"""What the internet can reach on the receiver's public port: no metrics without credentials, no mailbox
addresses in them, no static files, and a brake on guessing the status credentials."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from graphhook.core import keys, observe
from graphhook.devserver import BackgroundServer
from graphhook.redis_server import free_port
from receiver.app import create_app
from receiver.metrics import private_registry, serve_private

from .test_status import PASSWORD, TOKEN, USER, status_settings

MAILBOXES = [f"analyst{i}@contoso.com" for i in range(25)]


def seed_subscriptions(r, now: dt.datetime) -> list[str]:
    """25 registered subscriptions (one close to expiry) and a renewer alarm counted by mailbox; their ids."""
    ids = []
    for i, mailbox in enumerate(MAILBOXES):
        sid = f"3f2a9c1e-sub-{i:04d}"
        hours = 2 if i == 0 else 48 + i
        r.hset(keys.subscription(sid), mapping={
            "id": sid, "clientState": "x" * 40, "mailbox": mailbox, "userId": f"u-{i}", "folder": "inbox",
            "expiration": (now + dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ"), "state": "active"})
        r.sadd(keys.SUBSCRIPTIONS, sid)
        ids.append(sid)
    pipe = r.pipeline()
    observe.write(pipe, {("graphhook_subscription_alarms", f"{MAILBOXES[0]}{observe.LABEL_SEP}inbox"): 1}, [])
    pipe.execute()
    return ids


def assert_no_mailbox_or_subscription(text: str, ids: list[str]) -> None:
    leaked = [m for m in MAILBOXES if m in text] + [i for i in ids if i in text]
    assert not leaked, f"metrics name mailboxes or subscriptions: {leaked[:3]}"


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def test_public_metrics_need_the_status_credentials_and_name_no_mailbox(redis_server, redis_client, now):
    ids = seed_subscriptions(redis_client, now)
    bare = create_app(status_settings(redis_server.url), redis_client=redis_client, clock=lambda: now)
    assert bare.test_client().get("/metrics").status_code == 404  # no credentials configured: nothing there

    app = create_app(status_settings(redis_server.url, status_token=TOKEN), redis_client=redis_client,
                     clock=lambda: now)
    server = BackgroundServer(app).start()
    try:
        anonymous = requests.get(f"{server.url}/metrics", timeout=10)
        assert anonymous.status_code == 401
        assert_no_mailbox_or_subscription(anonymous.text, ids)
        scraped = requests.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    finally:
        server.stop()
    assert scraped.status_code == 200
    assert_no_mailbox_or_subscription(scraped.text, ids)
    assert 'graphhook_subscriptions{health="ok"} 24.0' in scraped.text
    assert 'graphhook_subscriptions{health="at_risk"} 1.0' in scraped.text
    assert "graphhook_subscription_alarms_total 1.0" in scraped.text


def test_private_listener_serves_aggregates_and_detail_only_when_asked(redis_server, redis_client, now):
    ids = seed_subscriptions(redis_client, now)
    settings = status_settings(redis_server.url).replace(metrics_port=free_port())
    server = serve_private(settings, private_registry(settings, redis_client))
    assert server is not None
    try:
        text = requests.get(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=10).text
    finally:
        server[0].shutdown()
        server[0].server_close()
    assert_no_mailbox_or_subscription(text, ids)
    assert 'graphhook_subscriptions{health="ok"} 24.0' in text
    soonest = [line for line in text.splitlines() if line.startswith("graphhook_subscription_soonest_expiry_seconds ")]
    assert len(soonest) == 1 and 0 < float(soonest[0].split()[1]) <= 2 * 3600
    assert "graphhook_queue_jobs" in text

    detailed = status_settings(redis_server.url).replace(metrics_port=free_port(), metrics_subscription_detail=True)
    server = serve_private(detailed, private_registry(detailed, redis_client))
    assert server is not None
    try:
        text = requests.get(f"http://127.0.0.1:{detailed.metrics_port}/metrics", timeout=10).text
    finally:
        server[0].shutdown()
        server[0].server_close()
    assert all(m in text for m in MAILBOXES) and all(i in text for i in ids)


def test_no_static_files_are_served(redis_server, redis_client, tmp_path, monkeypatch):
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "graphhook.env").write_text("AZURE_CLIENT_SECRET=do-not-serve-me\n")
    monkeypatch.chdir(tmp_path)  # Flask's default static folder is found relative to the working directory
    client = create_app(status_settings(redis_server.url), redis_client=redis_client).test_client()
    for path in ("/static/graphhook.env", "/static/", "/static/../setup.cfg"):
        reply = client.get(path)
        assert reply.status_code == 404, path
        assert b"do-not-serve-me" not in reply.data


class Clock:
    """A clock the test moves."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def test_failed_logins_are_limited_per_address(redis_server, redis_client, now):
    clock = Clock(now)
    settings = status_settings(redis_server.url, status_user=USER, status_password=PASSWORD, status_token=TOKEN)
    settings = settings.replace(status_max_failures=5, status_failure_window_seconds=300)
    client = create_app(settings, redis_client=redis_client, clock=clock).test_client()
    attacker, operator = {"REMOTE_ADDR": "203.0.113.7"}, {"REMOTE_ADDR": "198.51.100.2"}

    assert client.get("/status", environ_base=attacker).status_code == 401  # no credentials: a challenge, not a failure
    for guess in range(5):
        assert client.get("/status", auth=(USER, f"guess{guess}"), environ_base=attacker).status_code == 401
    refused = client.get("/status", auth=(USER, PASSWORD), environ_base=attacker)  # even the right password
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, environ_base=attacker).status_code == 429
    assert client.get("/status", auth=(USER, PASSWORD), environ_base=operator).status_code == 200  # others unaffected

    clock.now += dt.timedelta(seconds=301)  # the window has passed
    assert client.get("/status", auth=(USER, PASSWORD), environ_base=attacker).status_code == 200


def test_behind_a_proxy_the_limit_keys_on_the_forwarded_address(redis_server, redis_client, now):
    settings = status_settings(redis_server.url, status_token=TOKEN).replace(status_max_failures=2, proxy_hops=1)
    client = create_app(settings, redis_client=redis_client, clock=lambda: now).test_client()
    router = {"REMOTE_ADDR": "10.1.2.3"}  # every request arrives from the proxy

    def get(client_address: str, token: str):
        return client.get("/status", environ_base=router, headers={
            "Authorization": f"Bearer {token}", "X-Forwarded-For": f"192.0.2.99, {client_address}"})

    for _ in range(2):
        assert get("203.0.113.7", "wrong").status_code == 401
    assert get("203.0.113.7", TOKEN).status_code == 429
    assert get("198.51.100.2", TOKEN).status_code == 200  # the operator behind the same proxy still gets in
