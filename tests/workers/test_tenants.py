"""Many tenants in one deployment, on the worker side: each tenant's mail is fetched with its own token,
fires only its own rules, and a notification that crosses tenants is refused (docs/tenants.md)."""

from __future__ import annotations

import json

import pytest

from graphhook.core import jobformat, keys
from graphhook.core.errors import ConfigError
from tests.conftest import wait_for
from workers import runtime
from workers.subscriptions import registry
from workers.subscriptions.renewer import Renewer
from workers.triggers import webhooks
from workers.triggers.config import parse_config


def _events(redis_client):
    return [json.loads(e) for e in redis_client.lrange(keys.EVENTS, 0, -1)]


def _subscribe_both(two_tenants, redis_client):
    ctx = runtime.build(two_tenants.settings, redis_client)
    for name, mailbox in (("contoso", "alice@contoso.com"), ("fabrikam", "carol@fabrikam.com")):
        Renewer(ctx.for_tenant(name), [(mailbox, "inbox")]).reconcile()
    return ctx, {r.tenant: r for r in registry.all_records(redis_client)}


def test_each_tenants_subscription_is_made_with_its_own_token_and_recorded_under_its_name(
        two_tenants, emulator, redis_client):
    ctx, records = _subscribe_both(two_tenants, redis_client)

    assert records["contoso"].tenant_id == two_tenants.a.tenant_id and records["contoso"].mailbox == "alice@contoso.com"
    assert records["fabrikam"].tenant_id == two_tenants.b.tenant_id and records["fabrikam"].mailbox == "carol@fabrikam.com"
    assert {r.app_id for r in records.values()} == {emulator.client_id}
    # Each tenant's token is cached apart: no tenant ever reads another's.
    assert redis_client.exists(keys.token_cache("contoso")) and redis_client.exists(keys.token_cache("fabrikam"))
    # A second pass of each tenant's renewer leaves the other tenant's subscription alone.
    Renewer(ctx.for_tenant("contoso"), [("alice@contoso.com", "inbox")]).reconcile()
    assert {r.tenant for r in registry.all_records(redis_client)} == {"contoso", "fabrikam"}
    assert len(emulator.subscriptions.items) == 2


def test_mail_fires_only_the_rules_of_its_own_tenant(two_tenants, emulator, redis_client, start_worker):
    two_tenants.write(rules="  - name: contoso-invoices\n    when: always\n    actions: []\n"
                            "  - name: fabrikam-all\n    when: always\n    actions: []\n",
                      contoso="    rules: [contoso-invoices]\n", fabrikam="    rules: [fabrikam-all]\n")
    _subscribe_both(two_tenants, redis_client)
    start_worker(settings=two_tenants.settings)

    emulator.deliver("alice@contoso.com", {"subject": "invoice for contoso", "from": "x@example.com"})
    emulator.deliver("carol@fabrikam.com", {"subject": "invoice for fabrikam", "from": "x@example.com"})

    events = wait_for(lambda: len(_events(redis_client)) == 2 and _events(redis_client), timeout=60)
    by_subject = {e["email"]["subject"]: e for e in events}
    assert by_subject["invoice for contoso"]["tenant"] == "contoso"
    assert by_subject["invoice for contoso"]["rules"] == ["contoso-invoices"]
    assert by_subject["invoice for fabrikam"]["tenant"] == "fabrikam"
    assert by_subject["invoice for fabrikam"]["rules"] == ["fabrikam-all"]
    # Each mailbox was read with a token of its own tenant only.
    for tenant, mailbox in ((two_tenants.a, "alice@contoso.com"), (two_tenants.b, "carol@fabrikam.com")):
        user_id = tenant.user(mailbox).id.lower()
        reads = [r for r in emulator.request_log if user_id in r["path"].lower() and "/messages/" in r["path"]]
        assert reads and {r["tenant"] for r in reads} == {tenant.tenant_id}


def test_a_job_naming_one_tenants_subscription_and_another_tenants_mailbox_acts_on_nothing(
        two_tenants, emulator, redis_client):
    """A job planted in Redis (or a receiver bug): contoso's subscription, fabrikam's tenant id and mailbox."""
    from tests.conftest import InProcessWorker

    _, records = _subscribe_both(two_tenants, redis_client)
    carol = two_tenants.b.user("carol@fabrikam.com")
    _, _, message = emulator.mail.add_message("carol@fabrikam.com", {"subject": "only in fabrikam", "from": "x@example.com"})
    emulator.request_log.clear()
    contoso = records["contoso"]
    forged = [{"subscriptionId": contoso.id, "clientState": contoso.client_state, "changeType": "created",
               "tenantId": tenant, "resource": f"Users/{carol.id}/Messages/{message['id']}",
               "resourceData": {"id": message["id"]}}
              for tenant in (two_tenants.b.tenant_id, two_tenants.a.tenant_id)]
    queue = jobformat.queue(two_tenants.settings.queue_name, redis_client)
    job = queue.enqueue("workers.jobs.process_notifications", forged)
    runtime.install(runtime.build(two_tenants.settings, redis_client))
    try:
        InProcessWorker([queue], connection=redis_client).work(burst=True)
    finally:
        runtime._context = None

    job.refresh()
    assert job.return_value() == {"processed": 0, "duplicates": 0, "gone": 0, "updated": 0, "deleted": 0, "refused": 2}
    assert _events(redis_client) == []
    assert not [r for r in emulator.request_log if carol.id.lower() in r["path"].lower()]  # nothing read


def test_tenants_are_validated_and_secrets_stay_in_the_environment():
    base = {"version": 1}
    guid = "2f16a741-1111-4d5c-9f0e-9b0b2a1c7e11"
    with pytest.raises(ConfigError, match="with tenants:, list each tenant's mailboxes under it"):
        parse_config({**base, "mailboxes": ["a@contoso.com"], "tenants": {"contoso": {"tenant_id": guid}}})
    with pytest.raises(ConfigError, match="listed under more than one tenant"):
        parse_config({**base, "tenants": {"a": {"tenant_id": guid}, "b": {"tenant_id": guid.upper()}}})
    with pytest.raises(ConfigError, match="mailbox 'x@contoso.com' is listed under tenants 'a' and 'b'"):
        parse_config({**base, "tenants": {"a": {"tenant_id": guid, "mailboxes": ["x@contoso.com"]},
                                          "b": {"tenant_id": guid.replace("1111", "2222"), "mailboxes": ["x@contoso.com"]}}})
    with pytest.raises(ConfigError, match="no app is named 'msp'"):
        parse_config({**base, "tenants": {"a": {"tenant_id": guid, "app": "msp"}}})
    with pytest.raises(ConfigError, match="inline secrets are not allowed"):
        parse_config({**base, "apps": {"msp": {"client_id": guid, "client_secret": "hunter2-hunter2"}},
                      "tenants": {"a": {"tenant_id": guid, "app": "msp"}}})
    with pytest.raises(ConfigError, match="environment variable MSP_SECRET is unset"):
        parse_config({**base, "apps": {"msp": {"client_id": guid, "secret_env": "MSP_SECRET"}},
                      "tenants": {"a": {"tenant_id": guid, "app": "msp"}}}, env={})
    with pytest.raises(ConfigError, match="tenant 'Contoso Ltd'"):
        parse_config({**base, "tenants": {"Contoso Ltd": {"tenant_id": guid}}})
    with pytest.raises(ConfigError, match="give this tenant its own name"):
        parse_config({**base, "tenants": {"default": {"tenant_id": guid}}})
    with pytest.raises(ConfigError, match="no rule is named 'nope'"):
        parse_config({**base, "tenants": {"a": {"tenant_id": guid, "rules": ["nope"]}}})
    config = parse_config({**base, "apps": {"msp": {"client_id": guid, "secret_env": "MSP_SECRET"}},
                           "tenants": {"a": {"tenant_id": guid.upper(), "app": "msp", "mailboxes": ["X@contoso.com"]}}},
                          env={"MSP_SECRET": "a-secret-value-1234"})
    (tenant,) = config.tenants
    assert tenant.tenant_id == guid and tenant.mailboxes[0].address == "x@contoso.com"
    assert "a-secret-value-1234" not in repr(config)


def test_webhooks_fire_only_for_the_tenants_that_list_them_with_content_read_in_the_emails_tenant(
        two_tenants, emulator, redis_client, start_worker, monkeypatch):
    import base64

    from tests.workers.sink import Sink

    sink = Sink().start()
    try:
        monkeypatch.setenv("FABRIKAM_SOAR_SECRET", "a-signing-secret-of-fabrikam")
        two_tenants.write(top=f"webhooks:\n  fabrikam-soar: {{url: '{sink.url}', secret_env: FABRIKAM_SOAR_SECRET, "
                              f"all_mail: true, include_content: true, backoff: [0]}}\n",
                          contoso="    webhooks: []\n", fabrikam="    webhooks: [fabrikam-soar]\n")
        _subscribe_both(two_tenants, redis_client)
        start_worker(settings=two_tenants.settings)
        attachment = {"name": "invoice.pdf", "contentType": "application/pdf", "content": b"%PDF fabrikam only"}
        emulator.deliver("alice@contoso.com", {"subject": "to contoso", "from": "x@example.com", "attachments": [attachment]})
        emulator.deliver("carol@fabrikam.com", {"subject": "to fabrikam", "from": "x@example.com", "attachments": [attachment]})

        wait_for(lambda: len(_events(redis_client)) == 2 and sink.requests, timeout=60)
        queue = jobformat.queue(two_tenants.settings.queue_name, redis_client)
        # Nothing left to deliver: no webhook job queued, running or scheduled for a retry.
        wait_for(lambda: not (queue.count or queue.started_job_registry.count or queue.scheduled_job_registry.count),
                 timeout=60)
        assert dict(redis_client.hgetall(webhooks.STATS)) == {b"fabrikam-soar:delivered": b"1"}
        (delivered,) = [json.loads(r.body) for r in sink.requests]
        assert delivered["tenant"] == "fabrikam" and delivered["email"]["subject"] == "to fabrikam"
        (file,) = delivered["email"]["attachments"]
        assert base64.b64decode(file["contentBytes"]) == b"%PDF fabrikam only"
    finally:
        sink.stop()


def test_a_tenant_that_revoked_consent_or_is_throttled_does_not_stop_the_others(
        two_tenants, emulator, redis_client, start_worker):
    from emulator.faults import FaultRule

    _subscribe_both(two_tenants, redis_client)
    start_worker(settings=two_tenants.settings)
    carol = two_tenants.b.user("carol@fabrikam.com")
    # fabrikam: every read of carol's mailbox is throttled for a long while...
    emulator.faults.add(FaultRule(category="graph", status=429, rate=1.0, retry_after=600, path=carol.id))
    emulator.deliver("carol@fabrikam.com", {"subject": "throttled in fabrikam", "from": "x@example.com"})
    emulator.deliver("alice@contoso.com", {"subject": "contoso while fabrikam is throttled", "from": "x@example.com"})
    wait_for(lambda: [e["email"]["subject"] for e in _events(redis_client)] == ["contoso while fabrikam is throttled"],
             timeout=60)

    # ...then fabrikam's admin revokes the app's consent: contoso's mail still flows.
    emulator.revoke_consent(emulator.app_registration, two_tenants.b)
    redis_client.delete(keys.token_cache("fabrikam"))
    emulator.mail.add_message("carol@fabrikam.com", {"subject": "after revocation", "from": "x@example.com"})
    emulator.deliver("alice@contoso.com", {"subject": "contoso after fabrikam revoked", "from": "x@example.com"})
    wait_for(lambda: "contoso after fabrikam revoked" in [e["email"]["subject"] for e in _events(redis_client)],
             timeout=60)
    assert all(e["tenant"] == "contoso" for e in _events(redis_client))


def test_with_one_app_per_customer_the_environment_needs_no_app_of_its_own(two_tenants, emulator, redis_client,
                                                                             monkeypatch):
    """apps: with secret_env per customer; AZURE_TENANT_ID / AZURE_CLIENT_ID / the secret unset."""
    own, bare = two_tenants.one_app_per_customer(emulator, monkeypatch)  # no app in the environment

    ctx = runtime.build(bare, redis_client)

    assert ctx.tenant == "contoso"
    fabrikam = ctx.for_tenant("fabrikam")
    assert fabrikam.settings.client_id == own.client_id
    assert [u["mail"] for u in fabrikam.graph.paged("users")] == ["carol@fabrikam.com"]
    with pytest.raises(KeyError, match="no tenant is named 'northwind'"):
        ctx.for_tenant("northwind")


def test_a_tenant_whose_app_changes_in_the_configuration_gets_a_new_token_provider(two_tenants, emulator, redis_client):
    import os
    import time

    ctx = runtime.build(two_tenants.settings, redis_client)
    before = ctx.for_tenant("fabrikam")
    assert ctx.for_tenant("fabrikam") is before  # built once
    own = two_tenants.b.add_app()
    os.environ["FABRIKAM_APP_SECRET"] = own.secret
    try:
        two_tenants.write(top=f"apps:\n  fabrikam-app: {{client_id: {own.client_id}, secret_env: FABRIKAM_APP_SECRET}}\n",
                          fabrikam="    app: fabrikam-app\n")
        os.utime(two_tenants.path, (time.time() + 5, time.time() + 5))  # a new mtime, however coarse the clock
        after = ctx.for_tenant("fabrikam")
    finally:
        del os.environ["FABRIKAM_APP_SECRET"]
    assert after is not before and after.settings.client_id == own.client_id
    assert [u["mail"] for u in after.graph.paged("users")] == ["carol@fabrikam.com"]


def test_an_alert_without_a_sender_is_sent_from_the_mail_tenants_own_alerts_mailbox(
        two_tenants, emulator, redis_client, start_worker):
    emulator.add_user("secops@contoso.com")
    two_tenants.b.add_user("secops@fabrikam.com")
    two_tenants.write(rules="  - name: alert-soc\n    when: always\n    actions:\n"
                            "      - alert: {to: soc@mssp.example}\n",
                      contoso="    alerts: {from: secops@contoso.com}\n",
                      fabrikam="    alerts: {from: secops@fabrikam.com}\n")
    _subscribe_both(two_tenants, redis_client)
    start_worker(settings=two_tenants.settings)

    emulator.deliver("carol@fabrikam.com", {"subject": "phish at fabrikam", "from": "x@example.com"})

    def sent():
        return [r for r in emulator.request_log if r["method"] == "POST" and r["path"].endswith("/sendMail")]
    (request,) = wait_for(sent, timeout=60)
    assert request["path"].lower() == "/v1.0/users/secops@fabrikam.com/sendmail"
    assert request["tenant"] == two_tenants.b.tenant_id and request["status"] == 202


def test_a_tenant_whose_rules_alert_without_any_sender_is_refused_at_load():
    guid = "2f16a741-1111-4d5c-9f0e-9b0b2a1c7e11"
    rules = [{"name": "alert-soc", "when": "always", "actions": [{"alert": {"to": "soc@mssp.example"}}]}]
    with pytest.raises(ConfigError, match="rule 'alert-soc' sends an alert without from:, and neither this tenant"):
        parse_config({"rules": rules, "tenants": {"a": {"tenant_id": guid, "alerts": {"from": "soc@a.example"}},
                                                  "b": {"tenant_id": guid.replace("1111", "2222")}}})
    with pytest.raises(ConfigError, match="an alert needs a sending mailbox"):  # as before, without tenants
        parse_config({"rules": rules})
