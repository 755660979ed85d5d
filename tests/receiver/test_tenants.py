"""Many tenants behind one receiver: a notification is ours only for the tenant, app and mailbox the registry
recorded for its subscription. Real receiver over HTTPS, the emulator with two tenants, real Redis; what is
enqueued is read off the RQ queue (docs/intake.md § Tenants, docs/security.md)."""

from __future__ import annotations

import json

import pytest
import requests

from emulator.richcrypto import encrypt_resource
from graphhook.core import jobformat
from tests.conftest import wait_for
from workers import runtime
from workers.subscriptions import registry
from workers.subscriptions.renewer import Renewer

from .conftest import make_key_pair

MAILBOXES = {"contoso": "alice@contoso.com", "fabrikam": "carol@fabrikam.com"}


def _subscribe(settings, redis_client) -> dict[str, registry.Record]:
    """Each tenant's mailbox subscribed with that tenant's token (handshakes answered by the receiver)."""
    ctx = runtime.build(settings, redis_client)
    for name, mailbox in MAILBOXES.items():
        Renewer(ctx.for_tenant(name), [(mailbox, "inbox")]).reconcile()
    return {r.tenant: r for r in registry.all_records(redis_client)}


def _post(receiver, emulator, body, path: str = "/notifications") -> int:
    return requests.post(f"{receiver.url}{path}", data=json.dumps(body), verify=str(emulator.ca_path),
                         headers={"Content-Type": "application/json"}, timeout=10).status_code


def _enqueued(settings, redis_client) -> list[dict]:
    """Every notification waiting in the RQ queue, as the workers would get it."""
    return [item for job in jobformat.queue(settings.queue_name, redis_client).jobs
            if job.func_name == "workers.jobs.process_notifications" for item in job.args[0]]


def _metrics(receiver) -> str:
    return receiver.app.config["METRICS"].render()[0].decode()


def _change(record: registry.Record, *, tenant_id: str | None = None, user_id: str | None = None,
            message: str = "m1", **extra) -> dict:
    """A created-message notification for ``record``'s subscription, with its real clientState."""
    return {"subscriptionId": record.id, "subscriptionExpirationDateTime": record.expiration,
            "changeType": "created", "clientState": record.client_state,
            "tenantId": tenant_id or record.tenant_id,
            "resource": f"Users/{user_id or record.user_id}/Messages/{message}",
            "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": message}, **extra}


@pytest.fixture
def subscribed(two_tenants, redis_client):
    return _subscribe(two_tenants.settings, redis_client)


def test_a_genuine_notification_from_each_tenant_is_enqueued(two_tenants, emulator, receiver, redis_client, subscribed):
    settings = two_tenants.settings
    two_tenants.a.deliver("alice@contoso.com", {"subject": "for contoso", "from": "x@example.com"})
    two_tenants.b.deliver("carol@fabrikam.com", {"subject": "for fabrikam", "from": "x@example.com"})

    items = wait_for(lambda: len(_enqueued(settings, redis_client)) == 2 and _enqueued(settings, redis_client))
    assert {(i["subscriptionId"], i["tenantId"].lower()) for i in items} == {
        (subscribed["contoso"].id, two_tenants.a.tenant_id), (subscribed["fabrikam"].id, two_tenants.b.tenant_id)}
    text = _metrics(receiver)
    assert 'graphhook_notifications_accepted_total{kind="change",tenant="contoso"} 1.0' in text
    assert 'graphhook_notifications_accepted_total{kind="change",tenant="fabrikam"} 1.0' in text


def test_one_tenants_subscription_naming_another_tenant_is_refused(two_tenants, emulator, receiver, redis_client,
                                                                 subscribed):
    contoso, carol = subscribed["contoso"], two_tenants.b.user("carol@fabrikam.com")
    body = {"value": [
        _change(contoso, tenant_id=two_tenants.b.tenant_id),  # right clientState, fabrikam's tenant id
        _change(contoso, tenant_id=two_tenants.b.tenant_id, user_id=carol.id, message="m2"),  # ... and its mailbox
        _change(contoso, tenant_id=two_tenants.b.tenant_id.upper(), message="m3"),
    ]}
    assert _post(receiver, emulator, body) == 202
    assert _enqueued(two_tenants.settings, redis_client) == []
    event = {"subscriptionId": contoso.id, "subscriptionExpirationDateTime": contoso.expiration,
             "clientState": contoso.client_state, "tenantId": two_tenants.b.tenant_id,
             "lifecycleEvent": "reauthorizationRequired"}
    assert _post(receiver, emulator, {"value": [event]}, path="/lifecycle") == 202
    assert not [j for j in jobformat.queue(two_tenants.settings.queue_name, redis_client).jobs
                if j.func_name == "workers.jobs.handle_lifecycle"]
    # Counted under the subscription's tenant from the registry, never the claimed one.
    text = _metrics(receiver)
    assert 'graphhook_notifications_rejected_total{reason="tenant_mismatch",tenant="contoso"} 4.0' in text
    assert not [line for line in text.splitlines() if line.startswith("graphhook_notifications_") and "fabrikam" in line]


def test_one_tenants_subscription_naming_another_tenants_mailbox_is_refused(two_tenants, emulator, receiver,
                                                                          redis_client, subscribed):
    contoso, carol = subscribed["contoso"], two_tenants.b.user("carol@fabrikam.com")
    _, _, message = emulator.mail.add_message("carol@fabrikam.com", {"subject": "only in fabrikam", "from": "x@example.com"})
    body = {"value": [
        _change(contoso, user_id=carol.id, message=message["id"]),  # contoso's id and clientState, carol's mailbox
        _change(contoso, user_id=f"{carol.id}@{two_tenants.b.tenant_id}", message=message["id"]),
        _change(contoso, user_id="carol@fabrikam.com", message=message["id"]),
    ]}
    assert _post(receiver, emulator, body) == 202
    assert _enqueued(two_tenants.settings, redis_client) == []
    assert 'graphhook_notifications_rejected_total{reason="resource_mismatch",tenant="contoso"} 3.0' in _metrics(receiver)
    # Fabrikam's subscription cannot be borrowed either: its clientState with contoso's subscription id is refused.
    borrowed = _change(contoso, user_id=carol.id, message=message["id"])
    borrowed["clientState"] = subscribed["fabrikam"].client_state
    assert _post(receiver, emulator, {"value": [borrowed]}) == 202
    assert _enqueued(two_tenants.settings, redis_client) == []


@pytest.fixture
def rich(two_tenants, redis_client, receiver, tmp_path):
    """Both tenants subscribed with rich notifications; ``.cert`` encrypts content as Graph would."""
    key_path, cert = make_key_pair(tmp_path)
    settings = two_tenants.settings.replace(rich_notifications=True, encryption_keys=f"c1={key_path}")
    records = _subscribe(settings, redis_client)
    assert all(r.rich for r in records.values())
    return records, cert


def test_rich_notifications_need_a_validation_token_of_their_own_app_and_tenant(two_tenants, emulator, receiver,
                                                                              redis_client, rich):
    records, cert = rich
    contoso, fabrikam = records["contoso"], records["fabrikam"]
    app, issue = emulator.client_id, emulator.directory.issue_validation_token
    a, b = two_tenants.a.tenant_id, two_tenants.b.tenant_id
    item_a = _change(contoso, encryptedContent=encrypt_resource({"id": "m1"}, cert, "c1"))
    item_b = _change(fabrikam, encryptedContent=encrypt_resource({"id": "m1"}, cert, "c1"))

    for tokens, items in (
            ([issue(app, tenant_id=b)], [item_a]),                         # fabrikam's token for contoso's item
            ([issue("another-app", tenant_id=a)], [item_a]),               # another app's token in contoso
            ([issue(app, tenant_id=a), issue(app, tenant_id=b)], [item_a]),  # one extra token, for a tenant not in the POST
            ([issue(app, tenant_id=a)], [item_a, item_b]),                 # contoso's token cannot vouch for fabrikam's
            ([], [item_a])):
        assert _post(receiver, emulator, {"value": items, "validationTokens": tokens}) == 202
        assert _enqueued(two_tenants.settings, redis_client) == [], (tokens, items)
    text = _metrics(receiver)
    assert 'graphhook_notifications_rejected_total{reason="validation_token_invalid",tenant="contoso"} 3.0' in text
    assert 'graphhook_notifications_rejected_total{reason="validation_token_missing",tenant="fabrikam"} 1.0' in text

    # One token per tenant, each for its own items: accepted.
    both = {"value": [item_a, item_b], "validationTokens": [issue(app, tenant_id=a), issue(app, tenant_id=b)]}
    assert _post(receiver, emulator, both) == 202
    assert {i["subscriptionId"] for i in _enqueued(two_tenants.settings, redis_client)} == {contoso.id, fabrikam.id}


def test_genuine_rich_notifications_of_both_tenants_are_enqueued(two_tenants, emulator, receiver, redis_client, rich):
    records, _ = rich
    two_tenants.a.deliver("alice@contoso.com", {"subject": "rich contoso", "from": "x@example.com"})
    two_tenants.b.deliver("carol@fabrikam.com", {"subject": "rich fabrikam", "from": "x@example.com"})
    items = wait_for(lambda: len(_enqueued(two_tenants.settings, redis_client)) == 2
                     and _enqueued(two_tenants.settings, redis_client))
    assert {i["subscriptionId"] for i in items} == {records["contoso"].id, records["fabrikam"].id}
    assert all("encryptedContent" in i for i in items)


def test_with_an_app_per_customer_each_tenants_tokens_are_for_its_own_app(two_tenants, emulator, receiver,
                                                                         redis_client, tmp_path, monkeypatch):
    """Several audiences in one deployment: fabrikam's subscription was made by fabrikam's own app."""
    own = two_tenants.b.add_app()
    monkeypatch.setenv("FABRIKAM_SECRET", own.secret)
    two_tenants.write(top=f"apps:\n  fabrikam-app: {{client_id: {own.client_id}, secret_env: FABRIKAM_SECRET}}\n",
                      fabrikam="    app: fabrikam-app\n")
    key_path, cert = make_key_pair(tmp_path)
    records = _subscribe(two_tenants.settings.replace(rich_notifications=True, encryption_keys=f"c1={key_path}"),
                         redis_client)
    assert (records["contoso"].app_id, records["fabrikam"].app_id) == (emulator.client_id, own.client_id)
    issue, b = emulator.directory.issue_validation_token, two_tenants.b.tenant_id
    item_b = _change(records["fabrikam"], encryptedContent=encrypt_resource({"id": "m1"}, cert, "c1"))

    # The multi-tenant app is consented in fabrikam too, but this subscription is not its: refused.
    assert _post(receiver, emulator, {"value": [item_b], "validationTokens": [issue(emulator.client_id, tenant_id=b)]}) == 202
    assert _enqueued(two_tenants.settings, redis_client) == []
    assert _post(receiver, emulator, {"value": [item_b], "validationTokens": [issue(own.client_id, tenant_id=b)]}) == 202
    assert [i["subscriptionId"] for i in _enqueued(two_tenants.settings, redis_client)] == [records["fabrikam"].id]
    # And Graph's own notifications, one per tenant with each app's token, pass.
    two_tenants.a.deliver("alice@contoso.com", {"subject": "contoso", "from": "x@example.com"})
    two_tenants.b.deliver("carol@fabrikam.com", {"subject": "fabrikam", "from": "x@example.com"})
    wait_for(lambda: len(_enqueued(two_tenants.settings, redis_client)) == 3)


def _samples(receiver) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(_metrics(receiver)) for s in family.samples}


def test_each_tenants_mail_is_counted_under_its_tenant_from_intake_to_trigger(two_tenants, emulator, receiver,
                                                                            redis_client, subscribed, start_worker):
    start_worker(settings=two_tenants.settings)
    two_tenants.a.deliver("alice@contoso.com", {"subject": "one", "from": "x@example.com"})
    two_tenants.a.deliver("alice@contoso.com", {"subject": "two", "from": "x@example.com"})
    two_tenants.b.deliver("carol@fabrikam.com", {"subject": "three", "from": "x@example.com"})

    def fired(tenant: str) -> float:
        return _samples(receiver).get(("graphhook_triggers_fired_total", (("rule", "record"), ("tenant", tenant))), 0)

    wait_for(lambda: fired("contoso") == 2 and fired("fabrikam") == 1, timeout=60)
    samples = _samples(receiver)
    for tenant, n in (("contoso", 2), ("fabrikam", 1)):
        assert samples[("graphhook_notifications_accepted_total", (("kind", "change"), ("tenant", tenant)))] == n
        assert samples[("graphhook_notifications_processed_total", (("outcome", "processed"), ("tenant", tenant)))] == n
        assert samples[("graphhook_tenant_subscriptions", (("health", "ok"), ("tenant", tenant)))] == 1


def test_with_an_app_per_customer_the_receiver_is_ready_without_an_app_of_its_own(two_tenants, redis_client):
    from receiver.app import create_app

    ready = create_app(two_tenants.settings.replace(client_id=""), redis_client=redis_client).test_client()
    assert ready.get("/readyz").status_code == 200
    single = create_app(two_tenants.settings.replace(client_id="", config_path="missing.yaml"), redis_client=redis_client)
    response = single.test_client().get("/readyz")
    assert response.status_code == 503 and b"AZURE_CLIENT_ID" in response.data
