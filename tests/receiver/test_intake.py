"""Intake over HTTPS as Graph sees it: one job per POST, lifecycle events, limits, rich notifications,
Redis failures (a stopped server and a closed port), readiness and metrics."""

from __future__ import annotations

import json

import pytest
import requests

from graphhook.core import jobformat
from graphhook.redis_server import RedisServer, free_port
from receiver.app import create_app
from tests.conftest import wait_for
from workers.records.rich import open_encrypted

from .conftest import STATE, change, lifecycle, make_key_pair, register


def _post(receiver, emulator, body, path="/notifications", **kwargs):
    return requests.post(f"{receiver.url}{path}", data=json.dumps(body), verify=str(emulator.ca_path),
                         headers={"Content-Type": "application/json; charset=utf-8"}, **kwargs)


def _jobs(settings, redis_client):
    return jobformat.queue(settings.queue_name, redis_client).jobs


def _metrics(receiver, emulator) -> str:
    return receiver.app.config["METRICS"].render()[0].decode()  # what the private metrics listener serves


def test_a_batch_becomes_one_retried_job(receiver, emulator, redis_client, settings):
    register(redis_client, emulator.tenant_id)
    body = {"value": [change(emulator.tenant_id, message=f"m{i}") for i in range(100)]}
    assert _post(receiver, emulator, body).status_code == 202
    jobs = _jobs(settings, redis_client)
    assert [j.func_name for j in jobs] == ["workers.jobs.process_notifications"]
    assert [item["resource"] for item in jobs[0].args[0]] == [f"Users/u1/Messages/m{i}" for i in range(100)]
    assert jobs[0].retries_left and jobs[0].retries_left >= 3
    assert STATE not in json.dumps(jobs[0].args)


@pytest.mark.parametrize("path", ["/lifecycle", "/notifications"])
def test_lifecycle_events_each_become_a_job(receiver, emulator, redis_client, settings, path):
    register(redis_client, emulator.tenant_id)
    body = {"value": [lifecycle(emulator.tenant_id, "reauthorizationRequired"),
                      lifecycle(emulator.tenant_id, "missed"),
                      lifecycle(emulator.tenant_id, "missed", state="forged" * 5)]}
    assert _post(receiver, emulator, body, path=path).status_code == 202
    jobs = _jobs(settings, redis_client)
    assert [j.func_name for j in jobs] == ["workers.jobs.handle_lifecycle"] * 2
    assert [j.args[0]["lifecycleEvent"] for j in jobs] == ["reauthorizationRequired", "missed"]
    assert 'reason="client_state_mismatch"' in _metrics(receiver, emulator)


def test_change_and_lifecycle_together_is_refused(receiver, emulator, redis_client, settings):
    register(redis_client, emulator.tenant_id)
    body = {"value": [change(emulator.tenant_id, lifecycleEvent="missed")]}
    assert _post(receiver, emulator, body).status_code == 202
    assert _jobs(settings, redis_client) == []
    assert 'graphhook_notifications_rejected_total{reason="malformed",tenant=""} 1.0' in _metrics(receiver, emulator)


def test_wrong_content_type_is_415(receiver, emulator, redis_client, settings):
    register(redis_client, emulator.tenant_id)
    response = requests.post(f"{receiver.url}/notifications", data=json.dumps({"value": [change(emulator.tenant_id)]}),
                             headers={"Content-Type": "text/plain"}, verify=str(emulator.ca_path))
    assert response.status_code == 415
    assert _jobs(settings, redis_client) == []


def test_body_over_the_cap_is_413(emulator, settings, redis_client):
    app = create_app(settings.replace(max_body_bytes=2048), redis_client=redis_client)
    response = app.test_client().post("/notifications", data=b" " * 4096, content_type="application/json")
    assert response.status_code == 413


def test_overlong_validation_token_is_400_and_real_ones_echo(receiver, emulator):
    url = f"{receiver.url}/lifecycle"
    long = requests.post(url, params={"validationToken": "x" * 5000}, verify=str(emulator.ca_path))
    assert long.status_code == 400
    token = "Validation: Testing client application reachability for subscription Request-Id: a:b c%20d"
    ok = requests.post(url, params={"validationToken": token}, verify=str(emulator.ca_path))
    assert (ok.status_code, ok.text, ok.headers["X-Content-Type-Options"]) == (200, token, "nosniff")
    assert "graphhook_validation_handshakes_total 1.0" in _metrics(receiver, emulator)


def test_metrics_show_received_accepted_rejected_and_latency(receiver, emulator, redis_client):
    register(redis_client, emulator.tenant_id)
    body = {"value": [change(emulator.tenant_id), change(emulator.tenant_id, sid="unknown")]}
    _post(receiver, emulator, body)
    text = _metrics(receiver, emulator)
    assert "graphhook_notifications_received_total 2.0" in text
    assert 'graphhook_notifications_accepted_total{kind="change",tenant="default"} 1.0' in text
    assert 'graphhook_notifications_rejected_total{reason="unknown_subscription",tenant=""} 1.0' in text
    assert "graphhook_intake_seconds_count 1.0" in text


def test_rejections_are_logged_without_the_client_state(emulator, settings, redis_client, caplog):
    register(redis_client, emulator.tenant_id)
    client = create_app(settings, redis_client=redis_client).test_client()
    body = {"value": [change(emulator.tenant_id, tenantId="00000000-0000-0000-0000-000000000000"),
                      change(emulator.tenant_id, lifecycleEvent="missed"),
                      change(emulator.tenant_id, sid="unknown"),
                      change(emulator.tenant_id, state=STATE[:-1] + "t")]}
    with caplog.at_level("INFO"):
        assert client.post("/notifications", json=body).status_code == 202
    lines = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(lines) == 1  # one summary line per POST, counted by reason
    assert ("client_state_mismatch=1, malformed=1, tenant_mismatch=1, unknown_subscription=1" in lines[0])
    assert STATE[:20] not in caplog.text


# --- Redis failures -------------------------------------------------------------------------

def test_closed_redis_port_means_503_and_not_ready(emulator, settings):
    app = create_app(settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    client = app.test_client()
    body = {"value": [change(emulator.tenant_id)]}
    assert client.post("/notifications", json=body).status_code == 503
    assert client.post("/notifications", data=b"{bad", content_type="application/json").status_code == 400
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_redis_stopping_mid_run_turns_202_into_503_and_back(emulator, settings, tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    try:
        import redis

        r = redis.Redis.from_url(server.url)
        register(r, emulator.tenant_id)
        app = create_app(settings.replace(redis_url=server.url, registry_cache_seconds=0))
        client = app.test_client()
        body = {"value": [change(emulator.tenant_id)]}
        assert client.post("/notifications", json=body).status_code == 202
        assert client.get("/readyz").status_code == 200
        server.stop()
        assert client.post("/notifications", json=body).status_code == 503
        assert client.get("/readyz").status_code == 503
        server.start()
        register(r, emulator.tenant_id)
        wait_for(lambda: client.post("/notifications", json=body).status_code == 202, timeout=10)
        assert b'graphhook_intake_unavailable_total{cause="redis"}' in app.config["METRICS"].render()[0]
    finally:
        server.stop()


def test_redis_that_accepts_but_never_answers_means_503(emulator, settings):
    import socket

    with socket.socket() as silent:  # connections complete in the backlog; nothing is ever read or sent
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        app = create_app(settings.replace(redis_url=f"redis://127.0.0.1:{silent.getsockname()[1]}/0"))
        response = app.test_client().post("/notifications", json={"value": [change(emulator.tenant_id)]})
    assert response.status_code == 503


def test_readyz_names_missing_settings(emulator, settings, redis_client):
    app = create_app(settings.replace(client_id=""), redis_client=redis_client)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert b"AZURE_CLIENT_ID" in response.data


# --- rich notifications, end to end with the emulator ----------------------------------------

def test_rich_notification_is_verified_enqueued_and_decrypted_by_the_worker(
        emulator, redis_client, settings, rich_subscription):
    emulator.deliver("alice@contoso.com", {"subject": "Quarterly report", "from": "bob@fabrikam.com"})
    jobs = wait_for(lambda: _jobs(settings, redis_client), timeout=15)
    items = jobs[0].args[0]
    assert "encryptedContent" in items[0] and "validationTokens" not in items[0]
    opened = open_encrypted(items, settings.replace(encryption_keys=rich_subscription.keys))
    assert opened[0]["resourceData"]["subject"] == "Quarterly report"
    assert "encryptedContent" not in opened[0]


def test_lifecycle_event_from_the_emulator_becomes_a_job(emulator, redis_client, settings, rich_subscription):
    # Delivered by the emulator to the subscription's lifecycleNotificationUrl, our /lifecycle.
    emulator.lifecycle(rich_subscription.id, "missed")
    jobs = wait_for(lambda: _jobs(settings, redis_client), timeout=15)
    assert [(j.func_name, j.args[0]["lifecycleEvent"], j.args[0]["subscriptionId"]) for j in jobs] == [
        ("workers.jobs.handle_lifecycle", "missed", rich_subscription.id)]


def test_a_bad_validation_token_spoils_the_whole_post(receiver, emulator, redis_client, settings):
    register(redis_client, emulator.tenant_id)
    _key, cert = make_key_pair(emulator.workdir)
    from emulator.richcrypto import encrypt_resource

    rich = change(emulator.tenant_id, encryptedContent=encrypt_resource({"id": "m1"}, cert, "c1"))
    forged = emulator.directory.issue_validation_token("another-app")  # right signer, wrong audience
    good = emulator.directory.issue_validation_token(emulator.client_id)
    body = {"value": [rich, change(emulator.tenant_id, message="m2")], "validationTokens": [good, forged]}
    assert _post(receiver, emulator, body).status_code == 202
    assert _jobs(settings, redis_client) == []
    assert 'reason="validation_token_invalid",tenant="default"} 2.0' in _metrics(receiver, emulator)
    missing = {"value": [rich]}
    assert _post(receiver, emulator, missing).status_code == 202
    assert _jobs(settings, redis_client) == []
    body["validationTokens"] = [good]
    assert _post(receiver, emulator, body).status_code == 202
    assert len(_jobs(settings, redis_client)[0].args[0]) == 2


def test_tampered_rich_content_is_dropped_by_the_worker(tmp_path, settings):
    key_path, cert = make_key_pair(tmp_path)
    from emulator.richcrypto import encrypt_resource

    content = encrypt_resource({"id": "m1", "subject": "x"}, cert, "c1")
    content["data"] = content["data"][:-8] + ("A" * 8 if not content["data"].endswith("A" * 8) else "B" * 8)
    items = [change("t", encryptedContent=content), change("t", message="plain")]
    opened = open_encrypted(items, settings.replace(encryption_keys=f"c1={key_path}"))
    assert [i["resource"] for i in opened] == ["Users/u1/Messages/plain"]
