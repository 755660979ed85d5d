"""Defence in depth behind the receiver: a job never fetches or acts on a message outside its subscription's
mailbox, whether the notification names another user or smuggles a path into the message id."""

from __future__ import annotations

import json

import pytest

from graphhook.core import keys
from graphhook.core.errors import NotFoundError
from workers import jobs, runtime
from workers.records.messages import Fetcher


@pytest.fixture
def installed(ctx):
    runtime.install(ctx)
    yield ctx


def _item(settings, resource: str, sid: str = "sub-alice") -> dict:
    return {"subscriptionId": sid, "tenantId": settings.tenant_id, "changeType": "created", "resource": resource,
            "resourceData": {"id": resource.rsplit("/", 1)[-1]}}


def _fired(redis_client) -> list[str]:
    return [json.loads(e)["email"]["subject"] for e in redis_client.lrange(keys.EVENTS, 0, -1)]


def test_a_job_refuses_a_message_of_another_mailbox_than_its_subscriptions(emulator, settings, redis_client, installed):
    alice = emulator.add_user("alice@contoso.com")
    bob = emulator.add_user("bob@contoso.com")
    own = emulator.deliver("alice@contoso.com", {"subject": "alice's"})
    secret = emulator.deliver("bob@contoso.com", {"subject": "bob's secret"})
    redis_client.hset(keys.subscription("sub-alice"), mapping={"mailbox": "alice@contoso.com", "folder": "inbox",
                                                               "userId": alice.id})
    counts = jobs.process_notifications([
        _item(settings, f"Users/{bob.id}/Messages/{secret['id']}"),
        _item(settings, f"Users/{bob.id}/Events/{secret['id']}"),  # not a message: refused, not a crash
        _item(settings, f"users('{alice.id.upper()}')/messages('{own['id']}')"),  # Graph's other spelling of ours
    ])
    assert counts["refused"] == 2 and counts["processed"] == 1
    assert _fired(redis_client) == ["alice's"]
    assert not emulator.requests(path=secret["id"])


def test_a_message_id_cannot_climb_out_of_the_mailbox(emulator, settings, redis_client, installed):
    alice = emulator.add_user("alice@contoso.com")
    bob = emulator.add_user("bob@contoso.com")
    secret = emulator.deliver("bob@contoso.com", {"subject": "bob's secret"})
    climbing = f"x/../../../{bob.id}/messages/{secret['id']}"  # the OData key form lets '/' into the id
    with pytest.raises(NotFoundError):
        Fetcher(installed.graph, alice.id).message(climbing)
    redis_client.hset(keys.subscription("sub-alice"), mapping={"mailbox": "alice@contoso.com", "folder": "inbox",
                                                               "userId": alice.id})
    counts = jobs.process_notifications([_item(settings, f"Users('{alice.id}')/Messages('{climbing}')")])
    assert counts["gone"] == 1 and _fired(redis_client) == []
