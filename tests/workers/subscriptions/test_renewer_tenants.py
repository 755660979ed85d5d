"""The renewer for many tenants against the emulator serving two: each tenant reconciled with its own token and
write pacing, a revoked or throttled tenant recorded and retried later while the other goes on, tenants added and
removed by editing the YAML only (workers/subscriptions/tenants.py).

The renewer's clock and sleep are the emulator's, so back-off is crossed with ``emulator.advance``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading

from graphhook.core import jobformat, keys
from tests.conftest import wait_for, worker_env
from workers import runtime
from workers.subscriptions import lifecycle, registry, tenant_state
from workers.subscriptions.tenants import BACKOFF_FIRST, from_settings


def _write(two_tenants, **mailboxes: list[str]) -> None:
    """The YAML with the named tenants watching those mailboxes; a newer mtime, so the next pass re-reads it."""
    ids = {"contoso": two_tenants.a.tenant_id, "fabrikam": two_tenants.b.tenant_id}
    lines = ["version: 1", "tenants:"]
    for name, addresses in mailboxes.items():
        lines += [f"  {name}:", f"    tenant_id: {ids[name]}", f"    mailboxes: [{', '.join(addresses)}]"]
    path = two_tenants.path
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text("\n".join(lines) + "\n")
    os.utime(path, ns=(before + 10**9, before + 10**9))


def _renewers(two_tenants, emulator, redis_client, settings=None):
    ctx = runtime.build(settings or two_tenants.settings, redis_client)
    return from_settings(ctx, clock=emulator.clock.now, sleep=emulator.advance)


def _state(redis_client, name):
    return tenant_state.read(redis_client, name)


def _touching(emulator, tenant):
    """Requests the emulator got for ``tenant``: its token endpoint or Graph with its token."""
    return [r for r in list(emulator.request_log) if r["tenant"] == tenant.tenant_id or tenant.tenant_id in r["path"]]


def _subs_of(emulator, tenant):
    return [s for s in list(emulator.subscriptions.items.values()) if s.tenant_id == tenant.tenant_id]


def test_one_pass_subscribes_every_tenants_mailboxes_each_with_its_own_token(two_tenants, emulator, redis_client):
    report = _renewers(two_tenants, emulator, redis_client).reconcile()

    assert (report.created, report.failed) == (2, 0)
    assert report.tenants == {"contoso": "ok", "fabrikam": "ok"}
    records = {r.tenant: r for r in registry.all_records(redis_client)}
    assert records["contoso"].mailbox == "alice@contoso.com" and records["contoso"].tenant_id == two_tenants.a.tenant_id
    assert records["fabrikam"].mailbox == "carol@fabrikam.com" and records["fabrikam"].tenant_id == two_tenants.b.tenant_id
    assert [s.id for s in _subs_of(emulator, two_tenants.b)] == [records["fabrikam"].id]
    assert _state(redis_client, "fabrikam")["reason"] == "" and _state(redis_client, "fabrikam")["at"]


def _tenant_state_metric(receiver, tenant: str) -> str:
    """The state /metrics shows for ``tenant`` (the gauge that is 1)."""
    text = receiver.app.config["METRICS"].render()[0].decode()
    states = [re.search(r'state="([a-z_]+)"', line).group(1) for line in text.splitlines()
              if line.startswith("graphhook_tenant_state{") and f'tenant="{tenant}"' in line and line.endswith(" 1.0")]
    return ",".join(states)


def test_a_revoked_tenant_is_reported_and_retried_with_back_off_while_the_other_goes_on(
        two_tenants, emulator, redis_client, receiver):
    two_tenants.a.add_user("bob@contoso.com", "Bob")
    renewers = _renewers(two_tenants, emulator, redis_client)
    renewers.reconcile()
    (carol_sub,) = _subs_of(emulator, two_tenants.b)

    emulator.revoke_consent(emulator.app_registration, two_tenants.b)
    _write(two_tenants, contoso=["alice@contoso.com", "bob@contoso.com"], fabrikam=["carol@fabrikam.com"])
    report = renewers.reconcile()

    assert report.created == 1  # bob, in contoso
    assert {r.mailbox for r in registry.all_records(redis_client) if r.tenant == "contoso"} == {
        "alice@contoso.com", "bob@contoso.com"}
    assert report.tenants == {"contoso": "ok", "fabrikam": "consent_missing"}
    state = _state(redis_client, "fabrikam")
    assert emulator.client_id in state["reason"] and "consent" in state["reason"]
    assert state["retryAt"]
    assert (_tenant_state_metric(receiver, "fabrikam"), _tenant_state_metric(receiver, "contoso")) == (
        "consent_missing", "ok")

    # Backing off: the next pass does not touch fabrikam at all, and contoso is still served.
    seen = len(_touching(emulator, two_tenants.b))
    assert renewers.reconcile().tenants["contoso"] == "ok"
    assert len(_touching(emulator, two_tenants.b)) == seen

    # After the back-off it is tried again: the token endpoint now says why, by its AADSTS code.
    emulator.advance(BACKOFF_FIRST.total_seconds() + 1)
    assert renewers.reconcile().tenants["fabrikam"] == "consent_missing"
    assert len(_touching(emulator, two_tenants.b)) > seen
    reason = _state(redis_client, "fabrikam")["reason"]
    assert "AADSTS700016" in reason and "not consented" in reason and two_tenants.b.tenant_id in reason

    # Consent granted again: at its next try the tenant is ok and its subscription reauthorized (renewed).
    emulator.consent(emulator.app_registration, two_tenants.b)
    emulator.advance(2 * BACKOFF_FIRST.total_seconds() + 1)
    report = renewers.reconcile()
    assert report.tenants == {"contoso": "ok", "fabrikam": "ok"} and report.failed == 0
    assert _state(redis_client, "fabrikam")["reason"] == ""
    assert not emulator.subscriptions.items[carol_sub.id].reauthorization_required
    # ...and its folder resynced at once, for the mail Graph did not notify while consent was missing.
    queue = jobformat.queue(two_tenants.settings.queue_name, redis_client)
    assert [(j.args[0], j.args[-1]) for j in queue.jobs if j.func_name == "workers.jobs.resync_folder"] == [
        ("carol@fabrikam.com", "fabrikam")]
    assert _tenant_state_metric(receiver, "fabrikam") == "ok"


def test_a_reauthorization_refused_by_a_revoked_tenant_is_recorded_not_retried(two_tenants, emulator, redis_client):
    _renewers(two_tenants, emulator, redis_client).reconcile()
    (record,) = [r for r in registry.all_records(redis_client) if r.tenant == "fabrikam"]
    emulator.revoke_consent(emulator.app_registration, two_tenants.b)

    ctx = runtime.build(two_tenants.settings, redis_client)
    item = {"subscriptionId": record.id, "tenantId": record.tenant_id, "clientState": record.client_state,
            "lifecycleEvent": "reauthorizationRequired", "subscriptionExpirationDateTime": record.expiration}
    assert lifecycle.handle(ctx, item) == "consent_missing"  # the job ends: RQ does not retry it in a loop

    assert _state(redis_client, "fabrikam")["state"] == "consent_missing"
    refused = registry.load(redis_client, record.id)
    assert refused.state == "renew_failed" and "consent" in refused.last_error  # red on the status page
    assert _state(redis_client, "contoso")["state"] == "ok"


def test_a_tenant_removed_from_the_configuration_loses_its_subscriptions_at_the_next_pass(
        two_tenants, emulator, redis_client):
    renewers = _renewers(two_tenants, emulator, redis_client)
    renewers.reconcile()
    assert len(_subs_of(emulator, two_tenants.b)) == 1

    _write(two_tenants, contoso=["alice@contoso.com"])
    report = renewers.reconcile()

    assert report.deleted == 1 and report.orphaned == 0 and report.tenants == {"contoso": "ok"}
    assert _subs_of(emulator, two_tenants.b) == []
    assert {r.tenant for r in registry.all_records(redis_client)} == {"contoso"}
    assert _state(redis_client, "fabrikam") == {}
    assert redis_client.smembers(keys.TENANTS) == {b"contoso"}
    assert len(_subs_of(emulator, two_tenants.a)) == 1


def test_a_removed_tenant_whose_consent_is_gone_is_left_to_expire_and_not_retried(
        two_tenants, emulator, redis_client, caplog):
    renewers = _renewers(two_tenants, emulator, redis_client)
    renewers.reconcile()
    (record,) = [r for r in registry.all_records(redis_client) if r.tenant == "fabrikam"]
    emulator.revoke_consent(emulator.app_registration, two_tenants.b)
    redis_client.delete(keys.token_cache("fabrikam"))  # as after the token's hour: the token endpoint is asked

    _write(two_tenants, contoso=["alice@contoso.com"])
    with caplog.at_level(logging.WARNING, logger="graphhook.renewer"):
        report = renewers.reconcile()

    assert report.orphaned == 1 and report.deleted == 0 and report.tenants == {"contoso": "ok"}
    assert len(_subs_of(emulator, two_tenants.b)) == 1  # still at Graph, expiring on its own
    # Out of the registry (the receiver refuses its notifications), listed until it expires.
    assert {r.tenant for r in registry.all_records(redis_client)} == {"contoso"}
    assert redis_client.hget(keys.orphans("fabrikam"), record.id).decode() == record.expiration
    assert redis_client.ttl(keys.orphans("fabrikam")) > 6 * 24 * 3600
    warning = next(r.getMessage() for r in caplog.records if "no longer configured" in r.getMessage())
    assert "fabrikam" in warning and "AADSTS700016" in warning and record.expiration in warning

    seen = len(_touching(emulator, two_tenants.b))
    assert renewers.reconcile().orphaned == 0
    assert len(_touching(emulator, two_tenants.b)) == seen  # never tried again


def test_a_tenant_added_to_the_configuration_is_subscribed_at_the_next_pass(two_tenants, emulator, redis_client):
    _write(two_tenants, contoso=["alice@contoso.com"])
    renewers = _renewers(two_tenants, emulator, redis_client)
    assert renewers.reconcile().tenants == {"contoso": "ok"}
    assert _subs_of(emulator, two_tenants.b) == []

    _write(two_tenants, contoso=["alice@contoso.com"], fabrikam=["carol@fabrikam.com"])
    report = renewers.reconcile()  # the same renewer: no restart

    assert report.created == 1 and report.tenants == {"contoso": "ok", "fabrikam": "ok"}
    assert len(_subs_of(emulator, two_tenants.b)) == 1


def _use_up_writes(emulator, tenant, seconds_ago: float) -> None:
    """Another tool of the same app spends the tenant's 1,000 subscription writes per 20 s at the emulator."""
    now = emulator.clock.monotonic() - seconds_ago
    for _ in range(1000):
        emulator.subscriptions.take_write(emulator.client_id, now, tenant=tenant.tenant_id)


def test_a_tenant_throttled_on_subscription_writes_does_not_hold_up_the_other(two_tenants, emulator, redis_client):
    _use_up_writes(emulator, two_tenants.b, seconds_ago=8)  # fabrikam: 429, Retry-After 13 s
    renewers = _renewers(two_tenants, emulator, redis_client)
    done = {}
    sweep = threading.Thread(target=lambda: done.setdefault("report", renewers.reconcile()))
    sweep.start()
    try:
        # contoso is subscribed while fabrikam's write still waits out its Retry-After.
        wait_for(lambda: _state(redis_client, "contoso").get("state") == "ok", timeout=60)
        assert len(_subs_of(emulator, two_tenants.a)) == 1
        assert _subs_of(emulator, two_tenants.b) == [] and sweep.is_alive()
        assert [r for r in _touching(emulator, two_tenants.b) if r["status"] == 429]
    finally:
        emulator.advance(20)  # the window has passed
        sweep.join(timeout=90)
    report = done["report"]
    assert (report.created, report.failed) == (2, 0) and report.tenants == {"contoso": "ok", "fabrikam": "ok"}
    assert not [r for r in _touching(emulator, two_tenants.a) if r["status"] == 429]


def test_a_tenant_still_throttled_after_the_retry_budget_is_marked_and_retried_later(
        two_tenants, emulator, redis_client):
    _use_up_writes(emulator, two_tenants.b, seconds_ago=0)
    renewers = _renewers(two_tenants, emulator, redis_client, two_tenants.settings.replace(graph_retry_seconds=0))

    report = renewers.reconcile()

    assert report.tenants == {"contoso": "ok", "fabrikam": "throttled"} and report.throttled == 1
    assert len(_subs_of(emulator, two_tenants.a)) == 1 and _subs_of(emulator, two_tenants.b) == []
    emulator.advance(BACKOFF_FIRST.total_seconds() + 1)  # past the back-off and the write window
    assert renewers.reconcile().tenants["fabrikam"] == "ok"
    assert len(_subs_of(emulator, two_tenants.b)) == 1


def test_the_renewer_process_and_reconcile_command_serve_every_tenant(two_tenants, emulator, redis_client):
    env = worker_env(two_tenants.settings, emulator)
    done = subprocess.run([sys.executable, "-m", "graphhook", "renewer", "--once"], env=env,
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert {(r.tenant, r.mailbox) for r in registry.all_records(redis_client)} == {
        ("contoso", "alice@contoso.com"), ("fabrikam", "carol@fabrikam.com")}

    emulator.revoke_consent(emulator.app_registration, two_tenants.b)
    done = subprocess.run([sys.executable, "-m", "graphhook", "subscriptions", "reconcile", "--json"], env=env,
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 1, done.stdout + done.stderr  # a tenant failed
    result = json.loads(done.stdout)
    assert result["tenants"] == {"contoso": "ok", "fabrikam": "consent_missing"} and result["failed"] == 1
    assert any(e.startswith("fabrikam: ") and "consent" in e for e in result["errors"])
    assert emulator.client_secret not in done.stdout + done.stderr


def test_a_lifecycle_event_for_a_removed_tenants_subscription_is_ignored_not_retried(
        two_tenants, emulator, redis_client):
    _renewers(two_tenants, emulator, redis_client).reconcile()
    (record,) = [r for r in registry.all_records(redis_client) if r.tenant == "fabrikam"]
    _write(two_tenants, contoso=["alice@contoso.com"])

    ctx = runtime.build(two_tenants.settings, redis_client)
    item = {"subscriptionId": record.id, "tenantId": record.tenant_id, "clientState": record.client_state,
            "lifecycleEvent": "reauthorizationRequired", "subscriptionExpirationDateTime": record.expiration}
    assert lifecycle.handle(ctx, item) == "ignored"


def test_with_one_app_per_customer_each_tenant_is_renewed_with_its_own_app(two_tenants, emulator, redis_client,
                                                                            monkeypatch):
    own, bare = two_tenants.one_app_per_customer(emulator, monkeypatch)  # no app in the environment

    report = _renewers(two_tenants, emulator, redis_client, bare).reconcile()

    assert report.created == 2 and report.tenants == {"contoso": "ok", "fabrikam": "ok"}
    assert {r.tenant: r.app_id for r in registry.all_records(redis_client)} == {
        "contoso": emulator.client_id, "fabrikam": own.client_id}
    assert [s.application_id for s in _subs_of(emulator, two_tenants.b)] == [own.client_id]
