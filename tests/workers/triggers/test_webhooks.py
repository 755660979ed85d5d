"""Signed webhooks delivered by real RQ jobs to a real HTTP sink on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import socket
import time

import pytest

from graphhook.cli import main
from graphhook.core import jobformat
from graphhook.core.errors import SignatureError
from tests.conftest import InProcessWorker
from tests.workers.sink import Sink
from workers import runtime
from workers.triggers import webhooks
from workers.triggers.config import config_for
from workers.triggers.insightconnect import insightconnect_event

SECRET = "whsec-test-0123456789abcdef"
QUEUE = "graphhook-webhook-tests"

RECORD = {
    "schema": "graphhook.email/1", "mailbox": "alice@contoso.com", "folder": "inbox", "id": "AAMk-1",
    "internetMessageId": "<1@example.net>", "subject": "Action required", "isRead": False,
    "from": {"name": "Admin", "address": "no-reply@evil.example.net"},
    "to": [{"name": "Alice", "address": "alice@contoso.com"}, {"name": "Bob", "address": "bob@contoso.com"}],
    "bodyHtml": "<p>hi</p>", "bodyText": None, "preview": "hi", "categories": ["Phishing"],
    "receivedDateTime": "2026-11-27T10:00:00Z", "headers": [{"name": "Received", "value": "from mx"}],
    "attachments": [
        {"id": "a1", "kind": "file", "name": "x.html", "contentType": "text/html", "size": 3, "contentBytes": "PGE+"},
        {"id": "a2", "kind": "item", "name": "fwd", "contentType": None, "size": 10, "email": {
            "subject": "inner", "from": {"name": "C", "address": "c@x.example"}, "to": [], "isRead": True,
            "headers": [], "attachments": [
                {"id": "n1", "kind": "file", "name": "in.pdf", "contentType": "application/pdf", "size": 1},
                {"id": "n2", "kind": "item", "name": "deeper", "email": {"subject": "deepest", "attachments": [
                    {"id": "d1", "kind": "file", "name": "deep.txt", "contentType": "text/plain", "size": 1}]}}]}},
    ],
}


def documented_verify(body: bytes, header: str, secret: str, now: float) -> bool:
    """The receiver recipe from docs/configuration.md, written with the standard library only."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    if abs(now - timestamp) > 300:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


@pytest.fixture
def sink():
    s = Sink().start()
    yield s
    s.stop()


@pytest.fixture
def hook_ctx(settings, redis_client, tmp_path, monkeypatch):
    """Write a config with webhook ``url``, install a worker context (Graph: the emulator), return it."""
    monkeypatch.setenv("SINK_SECRET", SECRET)

    def make(url: str, extra: str = "backoff: [0, 0]"):
        path = tmp_path / "graphhook.yaml"
        path.write_text(f"webhooks:\n  soar: {{url: '{url}', secret_env: SINK_SECRET, {extra}}}\n")
        ctx = runtime.build(settings.replace(config_path=str(path), queue_name=QUEUE), redis_client)
        monkeypatch.setattr(runtime, "_context", ctx)
        monkeypatch.setattr(runtime, "_pid", os.getpid())
        return ctx

    return make


def drain(redis_client) -> None:
    InProcessWorker([jobformat.queue(QUEUE, redis_client)], connection=redis_client).work(burst=True)


def enqueue(ctx, rule="quarantine"):
    hook = config_for(ctx.settings.config_path).webhooks["soar"]
    event = webhooks.build_event(RECORD, webhook="soar", rule=rule, message_id="AAMk-moved")
    webhooks.enqueue(ctx.redis, QUEUE, hook, event)
    return event


def test_sink_receives_signed_event_verifiable_with_documented_recipe(sink, hook_ctx, redis_client):
    ctx = hook_ctx(sink.url)
    event = enqueue(ctx)
    drain(redis_client)
    assert len(sink.requests) == 1
    got = sink.requests[0]
    header = got.headers["X-Graphhook-Signature"]
    assert documented_verify(got.body, header, SECRET, time.time())
    assert webhooks.verify(got.body, header, secret=SECRET) > 0
    payload = json.loads(got.body)
    assert payload["schema"] == "graphhook.event/1" and payload["type"] == "email.matched"
    assert payload["rule"] == "quarantine" and payload["id"] == event["id"] == got.headers["X-Graphhook-Event-Id"]
    assert payload["email"]["subject"] == "Action required"
    assert payload["email"]["id"] == "AAMk-moved" and payload["email"]["originalId"] == "AAMk-1"
    assert SECRET not in got.body.decode() and SECRET not in json.dumps(dict(got.headers))


def test_tampering_and_replay_are_detected(sink, hook_ctx, redis_client):
    ctx = hook_ctx(sink.url)
    enqueue(ctx)
    drain(redis_client)
    body, header = sink.requests[0].body, sink.requests[0].headers["X-Graphhook-Signature"]
    tampered = body.replace(b"Action required", b"Nothing to see")
    assert not documented_verify(tampered, header, SECRET, time.time())
    with pytest.raises(SignatureError, match="does not match"):
        webhooks.verify(tampered, header, secret=SECRET)
    forged = header[:-4] + ("0000" if not header.endswith("0000") else "1111")
    with pytest.raises(SignatureError, match="does not match"):
        webhooks.verify(body, forged, secret=SECRET)
    with pytest.raises(SignatureError, match="does not match"):
        webhooks.verify(body, header, secret="another-secret-of-some-length")
    sent_at = int(header.split(",")[0][2:])
    assert not documented_verify(body, header, SECRET, sent_at + 301)
    with pytest.raises(SignatureError, match="possible replay"):
        webhooks.verify(body, header, secret=SECRET, now=sent_at + 301)
    with pytest.raises(SignatureError, match="missing"):
        webhooks.verify(body, None, secret=SECRET)


def test_server_errors_are_retried_until_delivered(hook_ctx, redis_client):
    sink = Sink([503, 500]).start()
    try:
        ctx = hook_ctx(sink.url)
        event = enqueue(ctx)
        drain(redis_client)
    finally:
        sink.stop()
    assert [r.headers["X-Graphhook-Event-Id"] for r in sink.requests] == [event["id"]] * 3
    assert all(webhooks.verify(r.body, r.headers["X-Graphhook-Signature"], secret=SECRET) for r in sink.requests)
    stats = redis_client.hgetall(webhooks.STATS)
    assert stats[b"soar:delivered"] == b"1" and stats[b"soar:failed_attempts"] == b"2"
    assert webhooks.failed(redis_client) == []


def test_refused_delivery_is_kept_and_replayable_from_the_cli(hook_ctx, redis_client, caplog, capsys, monkeypatch):
    sink = Sink([401]).start()
    try:
        ctx = hook_ctx(sink.url)
        with caplog.at_level(logging.DEBUG):
            event = enqueue(ctx)
            drain(redis_client)
        assert len(sink.requests) == 1  # a 401 is not retried: the receiver refuses, retrying cannot help
        kept = webhooks.failed(redis_client)
        assert [k["event"]["id"] for k in kept] == [event["id"]] and "401" in kept[0]["error"]
        for name, value in (("REDIS_URL", ctx.settings.redis_url), ("GRAPHHOOK_CONFIG", ctx.settings.config_path),
                            ("GRAPHHOOK_QUEUE", QUEUE)):
            monkeypatch.setenv(name, value)
        assert main(["webhooks", "failed"]) == 0
        listed = capsys.readouterr().out
        assert event["id"] in listed and "401" in listed and "1 failed delivery" in listed
        assert main(["webhooks", "replay"]) == 0
        assert "queued 1 delivery again" in capsys.readouterr().out
        drain(redis_client)
        assert len(sink.requests) == 2 and webhooks.failed(redis_client) == []
        assert webhooks.verify(sink.requests[1].body, sink.requests[1].headers["X-Graphhook-Signature"], secret=SECRET)
    finally:
        sink.stop()
    assert SECRET not in caplog.text


def test_unreachable_webhook_gives_up_after_backoff_without_leaking_secret(hook_ctx, redis_client, caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connection refused
    ctx = hook_ctx(f"http://127.0.0.1:{port}/hook?token=abc", "backoff: [0]")
    with caplog.at_level(logging.DEBUG):
        enqueue(ctx)
        drain(redis_client)
    kept = webhooks.failed(redis_client)
    assert len(kept) == 1 and "ConnectionError" in kept[0]["error"]
    assert redis_client.hget(webhooks.STATS, "soar:failed_attempts") == b"2"
    assert SECRET not in caplog.text and "token=abc" not in caplog.text and "token=abc" not in kept[0]["error"]


def test_insightconnect_format_has_the_plugin_fields_and_types():
    out = insightconnect_event(RECORD)["icon_email"]
    assert set(out) == {"account", "id", "is_read", "sender", "recipients", "subject", "body", "categories",
                        "headers", "has_attachments", "attached_files", "attached_emails",
                        "flattened_attached_emails", "flattened_attached_files"}
    assert out["account"] == "alice@contoso.com" and out["id"] == "AAMk-1" and out["is_read"] is False
    assert out["sender"] == "no-reply@evil.example.net"
    assert out["recipients"] == ["alice@contoso.com", "bob@contoso.com"]
    assert out["categories"] == ["Phishing"]
    assert out["headers"] == [{"name": "Received", "value": "from mx"}] and out["has_attachments"] is True
    assert out["attached_files"] == [{"file_name": "x.html", "content": "PGE+", "content_type": "text/html"}]
    assert [e["subject"] for e in out["attached_emails"]] == ["inner"]
    assert out["attached_emails"][0]["id"] == "" and out["attached_emails"][0]["account"] == "alice@contoso.com"
    assert [e["subject"] for e in out["flattened_attached_emails"]] == ["deepest", "inner"]  # sorted, as the plugin
    assert [f["file_name"] for f in out["flattened_attached_files"]] == ["deep.txt", "in.pdf", "x.html"]
    assert all(isinstance(f["content"], str) for f in out["flattened_attached_files"])
    json.dumps(out)  # plain JSON


def test_insightconnect_webhook_body_is_signed_plugin_shape(sink, hook_ctx, redis_client):
    ctx = hook_ctx(sink.url, "backoff: [], format: insightconnect")
    enqueue(ctx)
    drain(redis_client)
    body = json.loads(sink.requests[0].body)
    assert list(body) == ["icon_email"]
    assert body["icon_email"]["id"] == "AAMk-moved" and body["icon_email"]["subject"] == "Action required"


def test_a_delivery_queued_under_the_old_job_name_is_still_delivered(sink, hook_ctx, redis_client):
    """Jobs queued before an upgrade name ``workers.webhooks.deliver``; the upgraded worker still runs them."""
    ctx = hook_ctx(sink.url)
    event = webhooks.build_event(RECORD, webhook="soar", rule="quarantine", message_id="AAMk-moved")
    job = jobformat.queue(QUEUE, redis_client).enqueue("workers.webhooks.deliver", "soar", event)
    drain(redis_client)
    assert job.get_status(refresh=True) == "finished"
    assert [json.loads(r.body)["id"] for r in sink.requests] == [event["id"]]
    assert webhooks.failed(ctx.redis) == []


@pytest.mark.parametrize("old, new", [("workers.triggers.resume", "resume_rules"),
                                      ("workers.resync.resync_job", "resync_folder"),
                                      ("workers.webhooks.deliver", "deliver_webhook")])
def test_old_job_names_resolve_to_the_current_jobs(redis_client, old, new):
    from workers import jobs

    job = jobformat.queue(QUEUE, redis_client).create_job(old, args=())
    assert job.func is getattr(jobs, new)
