"""The renewer against the emulator: create, renew, recreate, delete orphans, stay under the write limit.

Time is the emulator's clock: ``emulator.advance(seconds)`` jumps days ahead, and the renewer's
clock and sleep are wired to it, so nothing here sleeps for long.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from graphhook.core import jobformat, keys
from tests.conftest import wait_for
from workers import runtime
from workers.subscriptions import registry
from workers.subscriptions.leader import LeaderLock
from workers.subscriptions.operations import MAX_LIFETIME
from workers.subscriptions.renewer import Renewer

DAY = 24 * 3600


def fresh_context(settings, redis_client):
    """A new process context. Tokens cached before an emulator time jump are expired at the emulator."""
    redis_client.delete(keys.TOKEN_CACHE)
    return runtime.build(settings, redis_client)


def make_renewer(ctx, emulator, desired, **kwargs):
    return Renewer(ctx, desired, clock=emulator.clock.now, sleep=emulator.advance, **kwargs)


def graph_subscriptions(emulator):
    return dict(emulator.subscriptions.items)


def test_reconcile_creates_what_is_missing_with_lifecycle_url_and_own_client_state(
        emulator, live_settings, redis_client):
    emulator.add_user("alice@contoso.com")
    two_hours_ago = emulator.clock.now() - dt.timedelta(hours=2)
    emulator.mail.add_message("alice@contoso.com", {"subject": "old mail", "from": "x@example.com",
                                                    "receivedDateTime": two_hours_ago.strftime("%Y-%m-%dT%H:%M:%SZ")})
    ctx = fresh_context(live_settings, redis_client)
    report = make_renewer(ctx, emulator, [("alice@contoso.com", "inbox"), ("alice@contoso.com", "junkemail")]).reconcile()

    assert report.created == 2 and report.failed == 0
    subs = graph_subscriptions(emulator)
    assert len(subs) == 2
    for sub in subs.values():
        assert sub.lifecycle_url == f"{live_settings.public_url}/lifecycle"
        assert len(sub.client_state) >= 32
    assert len({s.client_state for s in subs.values()}) == 2
    # The baseline does not fire triggers for mail that was there before.
    assert jobformat.queue(live_settings.queue_name, redis_client).count == 0
    # A second pass has nothing to do.
    again = make_renewer(ctx, emulator, [("alice@contoso.com", "inbox"), ("alice@contoso.com", "junkemail")]).reconcile()
    assert (again.created, again.renewed, again.recreated, again.deleted) == (0, 0, 0, 0)


def test_subscription_near_expiry_is_renewed_to_the_documented_maximum(emulator, live_settings, redis_client):
    emulator.add_user("alice@contoso.com")
    ctx = fresh_context(live_settings, redis_client)
    desired = [("alice@contoso.com", "inbox")]
    make_renewer(ctx, emulator, desired).reconcile()
    (sid, sub), = graph_subscriptions(emulator).items()
    first_expiry = sub.expiration

    emulator.advance(6.5 * DAY)  # half a day left, under the 1-day margin
    ctx = fresh_context(live_settings, redis_client)
    report = make_renewer(ctx, emulator, desired).reconcile()

    assert report.renewed == 1 and report.created == 0
    renewed = emulator.subscriptions.items[sid]
    assert renewed.expiration > first_expiry
    assert renewed.expiration <= emulator.clock.now() + MAX_LIFETIME
    assert registry.load(redis_client, sid).renewed_at
    # Days of life: keep advancing and renewing; the subscription never lapses.
    for _ in range(4):
        emulator.advance(6.5 * DAY)
        ctx = fresh_context(live_settings, redis_client)
        assert make_renewer(ctx, emulator, desired).reconcile().renewed == 1
        assert sid in emulator.subscriptions.items


def test_unwanted_and_orphaned_subscriptions_are_deleted(emulator, live_settings, redis_client):
    emulator.add_user("alice@contoso.com")
    emulator.add_user("bob@contoso.com")
    ctx = fresh_context(live_settings, redis_client)
    make_renewer(ctx, emulator, [("alice@contoso.com", "inbox"), ("bob@contoso.com", "inbox")]).reconcile()
    bob_sid = next(r.id for r in registry.all_records(redis_client) if r.mailbox == "bob@contoso.com")
    # An orphan: ours at Graph (same notification URL) but lost from the registry.
    registry.remove(redis_client, bob_sid)

    report = make_renewer(ctx, emulator, [("alice@contoso.com", "inbox")]).reconcile()

    assert report.deleted == 1
    assert bob_sid not in emulator.subscriptions.items
    assert [r.mailbox for r in registry.all_records(redis_client)] == ["alice@contoso.com"]


def test_subscription_missing_at_graph_is_recreated(emulator, live_settings, redis_client):
    emulator.add_user("alice@contoso.com")
    ctx = fresh_context(live_settings, redis_client)
    desired = [("alice@contoso.com", "inbox")]
    make_renewer(ctx, emulator, desired).reconcile()
    (old_id,) = emulator.subscriptions.items
    with emulator.subscriptions.lock:
        del emulator.subscriptions.items[old_id]  # gone silently, as after an outage at Microsoft

    report = make_renewer(ctx, emulator, desired).reconcile()

    assert report.recreated == 1
    (new_id,) = emulator.subscriptions.items
    assert new_id != old_id
    assert [r.id for r in registry.all_records(redis_client)] == [new_id]


def test_two_renewers_at_once_renew_each_subscription_once(emulator, live_settings, redis_client):
    for i in range(5):
        emulator.add_user(f"user{i}@contoso.com")
    desired = [(f"user{i}@contoso.com", "inbox") for i in range(5)]
    ctx = fresh_context(live_settings, redis_client)
    make_renewer(ctx, emulator, desired).reconcile()
    emulator.advance(6.5 * DAY)
    redis_client.delete(keys.TOKEN_CACHE)
    emulator.request_log.clear()

    barrier = threading.Barrier(2)

    def replica():
        replica_ctx = runtime.build(live_settings, redis_client)
        renewer = make_renewer(replica_ctx, emulator, desired)
        barrier.wait()
        renewer.run(once=True, lock=LeaderLock(redis_client, keys.RENEWER_LOCK, ttl=60))

    threads = [threading.Thread(target=replica) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    patches = [r for r in emulator.request_log if r["method"] == "PATCH" and "/subscriptions/" in r["path"]]
    assert len(patches) == 5
    assert {r["path"] for r in patches} == {f"/v1.0/subscriptions/{s}" for s in emulator.subscriptions.items}


def test_a_dead_renewer_is_taken_over(redis_client):
    first = LeaderLock(redis_client, keys.RENEWER_LOCK, ttl=60)
    second = LeaderLock(redis_client, keys.RENEWER_LOCK, ttl=60)
    assert first.acquire()
    assert not second.acquire()
    assert first.acquire()  # the holder extends
    # Its last extension was for 0.3 s; then the holder died and stopped extending, and the lock lapses.
    assert LeaderLock(redis_client, keys.RENEWER_LOCK, ttl=0.3, owner=first.owner).acquire()
    wait_for(lambda: first.holder() is None)
    assert second.acquire()
    assert not first.acquire()


def test_sweep_of_many_renewals_never_hits_the_write_limit(emulator, live_settings, redis_client):
    """1,200 renewals in one pass: more than Graph's 1,000 writes per 20 s, without a single 429."""
    from emulator.subscriptions import Subscription as EmuSubscription

    user = emulator.add_user("big@contoso.com")
    now = emulator.clock.now()
    count = 1200
    desired = []
    for i in range(count):
        folder = f"folder{i}"
        sid = f"00000000-0000-0000-0000-{i:012d}"
        # Set up state directly (creating 1,200 over HTTPS is not what this test is about).
        emulator.subscriptions.items[sid] = EmuSubscription(
            id=sid, resource=f"users/{user.id}/mailFolders('{folder}')/messages", change_types=("created",),
            notification_url=f"{live_settings.public_url}/notifications",
            lifecycle_url=f"{live_settings.public_url}/lifecycle", expiration=now + dt.timedelta(hours=2),
            client_state="c" * 40, application_id=emulator.client_id, user_id=user.id, folder_ref=None)
        registry.save(redis_client, registry.Record(
            id=sid, mailbox="big@contoso.com", user_id=user.id, folder=folder, resource="r",
            expiration=registry.format_time(now + dt.timedelta(hours=2)), client_state="c" * 40))
        redis_client.hset(keys.delta(user.id, folder), "lastSync", registry.format_time(now))
        desired.append(("big@contoso.com", folder))
    ctx = fresh_context(live_settings, redis_client)
    emulator.request_log.clear()

    report = make_renewer(ctx, emulator, desired).reconcile()

    statuses = [r["status"] for r in emulator.request_log if r["method"] == "PATCH"]
    assert report.renewed == count and report.failed == 0
    assert len(statuses) == count and set(statuses) == {200}


def test_subscriptions_list_shows_state_and_last_renewal(emulator, live_settings, redis_client, monkeypatch, capsys):
    import json

    from graphhook.cli import main

    emulator.add_user("alice@contoso.com")
    ctx = fresh_context(live_settings, redis_client)
    make_renewer(ctx, emulator, [("alice@contoso.com", "inbox")]).reconcile()
    for name, value in {**emulator.environment(), "REDIS_URL": live_settings.redis_url,
                        "PUBLIC_URL": live_settings.public_url}.items():
        monkeypatch.setenv(name, value)

    assert main(["subscriptions", "list"]) == 0
    rows = json.loads(capsys.readouterr().out)
    (row,) = rows
    assert row["id"] in emulator.subscriptions.items
    assert row["state"] == "active" and row["lastRenewal"] == "never"
    assert row["resource"].endswith("/messages") and row["expiration"]

    assert main(["subscriptions", "list", "--table"]) == 0
    table = capsys.readouterr().out
    assert "STATE" in table and row["id"] in table


@pytest.mark.parametrize("text,expected", [("24h", dt.timedelta(hours=24)), ("30m", dt.timedelta(minutes=30)),
                                           ("7d", dt.timedelta(days=7))])
def test_durations(text, expected):
    from graphhook.commands.resync import parse_duration

    assert parse_duration(text) == expected


def test_bad_duration_is_a_clear_error():
    from graphhook.commands.resync import parse_duration
    from graphhook.core.errors import ConfigError

    with pytest.raises(ConfigError, match="'yesterday'"):
        parse_duration("yesterday")


def _key_and_certificate(path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "graphhook rich")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_rich_subscriptions_live_one_day_and_are_renewed_at_half_life(emulator, live_settings, redis_client, tmp_path):
    emulator.add_user("alice@contoso.com")
    keyfile = _key_and_certificate(tmp_path / "rich.pem")
    settings = live_settings.replace(rich_notifications=True, encryption_keys=f"rich-2026={keyfile}")
    ctx = fresh_context(settings, redis_client)
    desired = [("alice@contoso.com", "inbox")]
    assert make_renewer(ctx, emulator, desired).reconcile().created == 1
    (sid, sub), = graph_subscriptions(emulator).items()
    assert sub.include_resource_data and sub.encryption_certificate_id == "rich-2026"
    assert "$select=" in sub.resource
    assert sub.expiration <= emulator.clock.now() + dt.timedelta(minutes=1440)

    emulator.advance(11 * 3600)  # 13 hours left: more than half of its day
    assert make_renewer(fresh_context(settings, redis_client), emulator, desired).reconcile().renewed == 0
    emulator.advance(2 * 3600)  # 11 hours left: renewed, though the margin setting says 24 h
    assert make_renewer(fresh_context(settings, redis_client), emulator, desired).reconcile().renewed == 1
    assert emulator.subscriptions.items[sid].expiration > emulator.clock.now() + dt.timedelta(hours=23)


def test_safety_resync_is_enqueued_when_due_and_not_before(emulator, live_settings, redis_client):
    emulator.add_user("alice@contoso.com")
    ctx = fresh_context(live_settings, redis_client)
    desired = [("alice@contoso.com", "inbox")]
    make_renewer(ctx, emulator, desired).reconcile()  # creates and baselines
    queue = jobformat.queue(live_settings.queue_name, redis_client)
    assert make_renewer(ctx, emulator, desired).reconcile().resyncs == 0

    emulator.advance(31 * 60)
    report = make_renewer(fresh_context(live_settings, redis_client), emulator, desired).reconcile()
    assert report.resyncs == 1
    assert [j.func_name for j in queue.jobs] == ["workers.jobs.resync_folder"]
    # Still queued: the next pass does not pile up a second one.
    assert make_renewer(fresh_context(live_settings, redis_client), emulator, desired).reconcile().resyncs == 0


def test_renewer_process_runs_once_from_the_configuration_file(emulator, live_settings, redis_client, tmp_path):
    import os
    import subprocess
    import sys

    emulator.add_user("alice@contoso.com")
    emulator.add_user("bob@contoso.com")
    config = tmp_path / "graphhook.yaml"
    config.write_text("mailboxes:\n  - address: alice@contoso.com\n    folders: [inbox, junkemail]\n"
                      "  - address: bob@contoso.com\n")
    env = {**os.environ, **emulator.environment(), "REDIS_URL": live_settings.redis_url,
           "PUBLIC_URL": live_settings.public_url, "GRAPHHOOK_CONFIG": str(config)}
    done = subprocess.run([sys.executable, "-m", "graphhook", "renewer", "--once"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    watched = sorted((r.mailbox, r.folder) for r in registry.all_records(redis_client))
    assert watched == [("alice@contoso.com", "inbox"), ("alice@contoso.com", "junkemail"), ("bob@contoso.com", "inbox")]
    assert len(emulator.subscriptions.items) == 3
    assert live_settings.client_secret not in done.stdout + done.stderr
