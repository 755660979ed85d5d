"""The injectable clock: subscription expiry, token expiry, reauthorizationRequired when due, pause and resume,
and lifecycle events on demand."""

from __future__ import annotations

import datetime as dt

from emulator import Emulator
from emulator.clock import Clock
from tests.emulator.conftest import subscribe

ALICE = "alice@contoso.com"
HOUR = 3600.0


def _lifecycle(sink):
    return [n["lifecycleEvent"] for n in sink.items("/lifecycle")]


def _expiring_in(graph, sink, hours: float):
    return subscribe(graph, sink, f"users/{ALICE}/mailFolders('Inbox')/messages",
                     expirationDateTime=(graph.emu.clock.now() + dt.timedelta(hours=hours)).isoformat())


def test_clock_can_be_injected_and_only_moves_forward(tmp_path):
    start = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    emu = Emulator(tmp_path, clock=Clock(start=start))
    assert abs((emu.clock.now() - start).total_seconds()) < 5
    emu.advance(90)
    assert emu.clock.now() - start >= dt.timedelta(seconds=90)
    frozen = Emulator(tmp_path / "b", clock=lambda: 1_000_000.0)
    assert frozen.clock.time() == 1_000_000.0
    frozen.advance(10)
    assert frozen.clock.time() == 1_000_010.0
    try:
        emu.clock.advance(-1)
    except ValueError:
        pass
    else:
        raise AssertionError("the clock moved backwards")


def test_subscription_expires_and_stops_delivering(emulator, graph, sink):
    emulator.add_user(ALICE)
    sub = _expiring_in(graph, sink, 1)
    emulator.advance(HOUR + 60)
    assert sub["id"] not in emulator.subscriptions.items
    assert graph.get(f"/subscriptions/{sub['id']}").status_code == 404
    emulator.deliver(ALICE, {"subject": "after expiry"})
    emulator.delivery.wait_idle()
    assert sink.items() == []


def test_access_tokens_expire_on_the_emulator_clock(emulator, graph):
    emulator.add_user(ALICE)
    assert graph.get(f"/users/{ALICE}").status_code == 200
    emulator.advance(3599 + 301)  # past exp and the 5-minute skew
    expired = graph.get(f"/users/{ALICE}")
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "expired" in expired.json()["error"]["message"]
    graph.token = graph.new_token()
    assert graph.get(f"/users/{ALICE}").status_code == 200


def test_reauthorization_required_follows_the_documented_schedule(emulator, graph, sink):
    emulator.add_user(ALICE)
    _expiring_in(graph, sink, 72)
    emulator.advance(59 * HOUR)  # 13 h left: T/4 = 3 h 15 min, above 180 minutes
    emulator.delivery.wait_idle()
    assert _lifecycle(sink) == []
    emulator.advance(1.5 * HOUR)  # 11.5 h left: T/4 under 180 min -> first notice
    sink.wait(lambda s: _lifecycle(s) == ["reauthorizationRequired"])
    emulator.advance(10 * 60)  # next one is T/8 (~86 min) away
    emulator.delivery.wait_idle()
    assert len(_lifecycle(sink)) == 1
    emulator.advance(80 * 60)
    sink.wait(lambda s: len(_lifecycle(s)) == 2)
    notice = sink.items("/lifecycle")[0]
    assert set(notice) == {"subscriptionId", "subscriptionExpirationDateTime", "tenantId", "clientState", "lifecycleEvent"}
    assert notice["clientState"] == "s3cret"


def test_unanswered_reauthorization_pauses_delivery_until_reauthorize(emulator, graph, sink):
    emulator.add_user(ALICE)
    sub = _expiring_in(graph, sink, 24)
    emulator.lifecycle(sub["id"], "reauthorizationRequired")
    sink.wait(lambda s: _lifecycle(s) == ["reauthorizationRequired"])
    first = emulator.deliver(ALICE, {"subject": "still flowing during the grace period"})
    sink.wait(lambda s: len(s.items()) == 1)
    emulator.advance(emulator.reauthorization_grace + 1)
    lost = emulator.deliver(ALICE, {"subject": "lost while paused"})
    emulator.delivery.wait_idle()
    assert [n["resourceData"]["id"] for n in sink.items()] == [first["id"]]
    assert emulator.subscriptions.items[sub["id"]].lost == 1

    graph.token = graph.new_token()
    assert graph.post(f"/subscriptions/{sub['id']}/reauthorize").status_code == 204
    resumed = emulator.deliver(ALICE, {"subject": "flowing again"})
    sink.wait(lambda s: resumed["id"] in [n["resourceData"]["id"] for n in s.items()])
    assert lost["id"] not in [n["resourceData"]["id"] for n in sink.items()]


def test_renewing_also_reauthorizes(emulator, graph, sink):
    emulator.add_user(ALICE)
    sub = _expiring_in(graph, sink, 24)
    emulator.lifecycle(sub["id"], "reauthorizationRequired")
    emulator.advance(emulator.reauthorization_grace + 1)
    assert emulator.subscriptions.items[sub["id"]].paused(emulator.clock.now())
    graph.token = graph.new_token()
    renewed = graph.patch(f"/subscriptions/{sub['id']}",
                          json={"expirationDateTime": (emulator.clock.now() + dt.timedelta(days=2)).isoformat()})
    assert renewed.status_code == 200
    assert not emulator.subscriptions.items[sub["id"]].paused(emulator.clock.now())


def test_authorization_lifetime_knob_brings_notices_forward(emulator, graph, sink):
    emulator.add_user(ALICE)
    emulator.authorization_lifetime = HOUR  # like an access token's life
    _expiring_in(graph, sink, 72)
    emulator.advance(60)
    sink.wait(lambda s: _lifecycle(s) == ["reauthorizationRequired"])
    emulator.advance(15 * 60)
    sink.wait(lambda s: len(_lifecycle(s)) == 2)


def test_lifecycle_events_on_demand(emulator, graph, sink):
    emulator.add_user(ALICE)
    sub = _expiring_in(graph, sink, 24)
    emulator.lifecycle(sub["id"], "missed")
    emulator.lifecycle(sub["id"], "subscriptionRemoved")
    sink.wait(lambda s: _lifecycle(s) == ["missed", "subscriptionRemoved"])
    assert sub["id"] not in emulator.subscriptions.items
    assert graph.get(f"/subscriptions/{sub['id']}").status_code == 404
    try:
        emulator.lifecycle(sub["id"], "missed")
    except KeyError:
        pass
    else:
        raise AssertionError("a removed subscription accepted a lifecycle event")


def test_control_api_drives_clock_throttle_and_delta(emulator, graph):
    import requests

    base, verify = f"{emulator.url}/_emulator", str(emulator.ca_path)
    before = emulator.clock.now()
    moved = requests.post(f"{base}/clock", json={"advance": 120}, verify=verify).json()
    assert dt.datetime.fromisoformat(moved["now"]) - before >= dt.timedelta(seconds=120)
    limits = requests.post(f"{base}/throttle", json={"concurrency": 2}, verify=verify).json()
    assert limits["concurrency"] == 2 and emulator.throttle.limits.concurrency == 2
    assert requests.post(f"{base}/throttle", json={"bogus": 1}, verify=verify).status_code == 400
    assert requests.post(f"{base}/delta/evict", json={}, verify=verify).json() == {"evicted": 0}
    assert requests.get(f"{base}/state", verify=verify).json()["subscriptions"] == 0
