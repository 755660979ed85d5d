"""The receiver over HTTPS, as Graph sees it: handshake, clientState checks, enqueue, 202."""

from __future__ import annotations

import json

import pytest
import requests

from graphhook.core import jobformat, keys


def _register(redis_client, sid="sub-1", state="s" * 40, tenant=None, emulator=None):
    redis_client.hset(keys.subscription(sid), mapping={
        "clientState": state, "tenantId": tenant or emulator.tenant_id, "mailbox": "a@contoso.com",
        "userId": "u1", "rich": ""})


def _notification(emulator, sid="sub-1", state="s" * 40, tenant=None):
    return {"subscriptionId": sid, "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
            "changeType": "created", "resource": "Users/u1/Messages/m1", "clientState": state,
            "tenantId": tenant or emulator.tenant_id,
            "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": "m1"}}


@pytest.mark.parametrize("path", ["/notifications", "/lifecycle"])
def test_handshake_echoes_decoded_token_as_text(receiver, emulator, path):
    token = "Validation: Testing client application reachability for subscription Request-Id: 877cb92e-1"
    response = requests.post(f"{receiver.url}{path}", params={"validationToken": token},
                             headers={"Content-Type": "text/plain; charset=utf-8"}, verify=str(emulator.ca_path))
    assert response.status_code == 200
    assert response.text == token
    assert response.headers["Content-Type"].startswith("text/plain")


def test_accepted_notification_is_enqueued_by_dotted_name(receiver, emulator, redis_client, settings):
    _register(redis_client, emulator=emulator)
    response = requests.post(f"{receiver.url}/notifications", json={"value": [_notification(emulator)]},
                             verify=str(emulator.ca_path))
    assert response.status_code == 202
    jobs = jobformat.queue(settings.queue_name, redis_client).jobs
    assert len(jobs) == 1
    assert jobs[0].func_name == "workers.jobs.process_notifications"
    assert jobs[0].args[0][0]["resource"] == "Users/u1/Messages/m1"
    assert "clientState" not in json.dumps(jobs[0].args)  # the secret is not copied into Redis jobs


@pytest.mark.parametrize("change", [
    {"clientState": "wrong" * 8},
    {"subscriptionId": "not-ours"},
    {"tenantId": "00000000-0000-0000-0000-000000000000"},
])
def test_notifications_failing_checks_are_not_enqueued(receiver, emulator, redis_client, settings, change):
    _register(redis_client, emulator=emulator)
    body = {"value": [{**_notification(emulator), **change}]}
    response = requests.post(f"{receiver.url}/notifications", json=body, verify=str(emulator.ca_path))
    assert response.status_code == 202  # Graph must not retry what we refuse; it is counted instead
    assert jobformat.queue(settings.queue_name, redis_client).count == 0
    metrics = receiver.app.config["METRICS"].render()[0].decode()  # what the private metrics listener serves
    assert "graphhook_notifications_rejected_total" in metrics


def test_malformed_body_is_400_not_500(receiver, emulator):
    response = requests.post(f"{receiver.url}/notifications", data=b"{not json",
                             headers={"Content-Type": "application/json"}, verify=str(emulator.ca_path))
    assert response.status_code == 400
