"""A notification is tied to its subscription's mailbox, and a rich subscription's changes need validation tokens
even when ``encryptedContent`` is left out. Over HTTPS against the real receiver and the emulator's token issuer."""

from __future__ import annotations

import json

import requests

from graphhook.core import jobformat, keys

from .conftest import change, register

GUID = "5f0cc7e4-8b6a-4f3e-9d9e-2b1f0c7a9e11"


def _post(receiver, emulator, body):
    return requests.post(f"{receiver.url}/notifications", data=json.dumps(body), verify=str(emulator.ca_path),
                         headers={"Content-Type": "application/json"})


def _enqueued(settings, redis_client) -> list[str]:
    return [item["resource"] for job in jobformat.queue(settings.queue_name, redis_client).jobs
            for item in job.args[0]]


def _metrics(receiver, emulator) -> str:
    return receiver.app.config["METRICS"].render()[0].decode()  # what the private metrics listener serves


def test_a_change_in_another_mailbox_is_dropped_even_with_the_right_client_state(receiver, emulator, redis_client,
                                                                                 settings):
    register(redis_client, emulator.tenant_id, user_id=GUID)
    other = "0b7d1e7c-0000-4000-8000-000000000001"
    body = {"value": [
        change(emulator.tenant_id, resource=f"Users/{other}/Messages/stolen"),
        change(emulator.tenant_id, resource="Users/ceo@contoso.com/Messages/stolen"),  # an address is not the id
        change(emulator.tenant_id, resource=f"Users/{GUID}/Events/e1"),  # not a message
        # Graph's spellings of our own mailbox: upper-case id, @tenant suffix, OData keys, lower-case segments.
        change(emulator.tenant_id, resource=f"Users/{GUID.upper()}/Messages/m1"),
        change(emulator.tenant_id, resource=f"users/{GUID}@{emulator.tenant_id}/messages/m2"),
        change(emulator.tenant_id, resource=f"Users('{GUID}')/Messages('m3')"),
    ]}
    assert _post(receiver, emulator, body).status_code == 202
    assert _enqueued(settings, redis_client) == [item["resource"] for item in body["value"][3:]]
    assert 'reason="resource_mismatch",tenant="default"} 3.0' in _metrics(receiver, emulator)


def test_a_subscription_without_a_recorded_mailbox_accepts_no_change(receiver, emulator, redis_client, settings):
    register(redis_client, emulator.tenant_id, user_id="")
    assert _post(receiver, emulator, {"value": [change(emulator.tenant_id)]}).status_code == 202
    assert _enqueued(settings, redis_client) == []


def test_a_rich_subscription_needs_validation_tokens_without_encrypted_content(receiver, emulator, redis_client,
                                                                              settings):
    register(redis_client, emulator.tenant_id, rich=True)
    plain = {"value": [change(emulator.tenant_id)]}  # encryptedContent left out, and no validationTokens
    assert _post(receiver, emulator, plain).status_code == 202
    assert _enqueued(settings, redis_client) == []
    assert 'reason="validation_token_missing",tenant="default"} 1.0' in _metrics(receiver, emulator)
    forged = {**plain, "validationTokens": [emulator.directory.issue_validation_token("another-app")]}
    assert _post(receiver, emulator, forged).status_code == 202
    assert _enqueued(settings, redis_client) == []
    signed = {**plain, "validationTokens": [emulator.directory.issue_validation_token(emulator.client_id)]}
    assert _post(receiver, emulator, signed).status_code == 202
    assert _enqueued(settings, redis_client) == ["Users/u1/Messages/m1"]


def test_a_registry_hash_that_does_not_say_whether_it_is_rich_is_taken_as_rich(receiver, emulator, redis_client,
                                                                              settings):
    register(redis_client, emulator.tenant_id)
    redis_client.hdel(keys.subscription("sub-1"), "rich")
    assert _post(receiver, emulator, {"value": [change(emulator.tenant_id)]}).status_code == 202
    assert _enqueued(settings, redis_client) == []
