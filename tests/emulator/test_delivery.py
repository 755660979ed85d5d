"""Notification delivery: batching, retries with back-off, duplicates, reordering and Graph's slow-endpoint rules."""

from __future__ import annotations

from emulator.delivery import SLOW_THRESHOLD, Delivery, DeliveryOptions
from tests.emulator.conftest import subscribe

ALICE = "alice@contoso.com"


def test_one_post_carries_notifications_of_several_subscriptions(emulator, graph, sink):
    emulator.add_user(ALICE)
    first = subscribe(graph, sink, f"users/{ALICE}/mailFolders('Inbox')/messages")
    second = subscribe(graph, sink, f"users/{ALICE}/messages")
    emulator.deliver(ALICE, {"subject": "one change, two subscriptions"})
    sink.wait(lambda s: len(s.items()) == 2)
    posts = [p for p in sink.posts if p["path"] == "/notifications"]
    assert len(posts) == 1
    assert {n["subscriptionId"] for n in posts[0]["body"]["value"]} == {first["id"], second["id"]}
    item = posts[0]["body"]["value"][0]
    assert item["tenantId"] == emulator.tenant_id and item["clientState"] == "s3cret"
    assert item["resource"].startswith("Users/") and "resourceData" in item and "lifecycleEvent" not in item


def test_failed_deliveries_are_retried_with_back_off(emulator, graph, sink):
    emulator.add_user(ALICE)
    emulator.delivery.options.first_retry = 0.2
    subscribe(graph, sink, f"users/{ALICE}/messages")
    sink.status = 503
    message = emulator.deliver(ALICE, {"subject": "retry me"})
    attempts = lambda: [e for e in emulator.events if e["event"] == "delivery.attempt"]  # noqa: E731
    sink.wait(lambda s: len(attempts()) >= 3, timeout=10)
    sink.status = 202
    sink.wait(lambda s: any(e["status"] == 202 for e in attempts()), timeout=10)
    assert [e["status"] for e in attempts()][:2] == [503, 503]
    assert all(n["resourceData"]["id"] == message["id"] for n in sink.items())


def test_an_answer_slower_than_three_seconds_is_a_timeout_and_slow(emulator, graph, sink):
    emulator.add_user(ALICE)
    emulator.delivery.options.first_retry = 0.2
    subscribe(graph, sink, f"users/{ALICE}/messages")
    sink.delay = 3.2
    emulator.deliver(ALICE, {"subject": "slow"})
    sink.wait(lambda s: any(e["event"] == "delivery.attempt" for e in emulator.events), timeout=10)
    sink.delay = 0
    attempt = next(e for e in emulator.events if e["event"] == "delivery.attempt")
    # Timed out (not answered) and slow; how long past 3 s the attempt ended depends on the machine's load.
    assert attempt["status"] == "ReadTimeout" and attempt["elapsed"] > SLOW_THRESHOLD
    stats = emulator.delivery.stats[f"{sink.url}/notifications"]
    assert stats.slow == 1 and stats.failed == 1


def test_duplicates_and_reordering_when_switched_on(emulator, graph, sink):
    emulator.add_user(ALICE)
    subscribe(graph, sink, f"users/{ALICE}/messages")
    emulator.delivery.options.duplicate_rate = 1.0
    message = emulator.deliver(ALICE, {"subject": "twice"})
    sink.wait(lambda s: len(s.items()) == 2)
    assert [n["resourceData"]["id"] for n in sink.items()] == [message["id"]] * 2

    emulator.delivery.options.duplicate_rate = 0.0
    emulator.delivery.options.reorder = True
    emulator.delivery._random.seed(3)
    sent = [emulator.deliver(ALICE, {"subject": f"n{i}"})["id"] for i in range(12)]
    sink.wait(lambda s: len(s.items()) == 14)
    received = [n["resourceData"]["id"] for n in sink.items()[2:]]
    assert sorted(received) == sorted(sent) and received != sent


class _Response:
    def __init__(self, status: int) -> None:
        self.status_code = status


class _FakeEndpoint:
    """A session whose POSTs take ``slow`` seconds of fake time for the next ``slow_count`` calls."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slow_left = 0
        self.bodies: list[str] = []

    def timer(self) -> float:
        return self.now

    def post(self, url, data, **kwargs):
        self.bodies.append(data)
        if self.slow_left:
            self.slow_left -= 1
            self.now += 3.0
        return _Response(202)


def _delivery(endpoint, dropped):
    clock = {"t": 0.0}
    delivery = Delivery(endpoint, None, DeliveryOptions(batch_size=1), monotonic=lambda: clock["t"],
                        timer=endpoint.timer, on_dropped=dropped.extend)
    return delivery, clock


def _send(delivery, n, sub="s1"):
    from emulator.delivery import _Pending

    for i in range(n):
        delivery._send([_Pending(0, i, "https://x/notify", {"subscriptionId": sub, "changeType": "created"})])


def test_slow_percentage_counts_only_after_100_then_throttles_then_drops():
    endpoint, dropped = _FakeEndpoint(), []
    delivery, clock = _delivery(endpoint, dropped)
    endpoint.slow_left = 20
    _send(delivery, 99)  # 20 % slow, but under the 100-notification minimum
    stats = delivery.stats["https://x/notify"]
    assert stats.delivered == 99 and stats.state == "healthy"
    _send(delivery, 1)
    assert stats.state == "dropping"  # 20 of 100: at or above 15 %
    _send(delivery, 3)
    assert stats.dropped == 3 and len(dropped) == 3 and len(endpoint.bodies) == 100

    clock["t"] += 601  # the tally resets every 10 minutes
    endpoint.slow_left = 12
    _send(delivery, 100)
    stats = delivery.stats["https://x/notify"]
    assert stats.slow == 12 and stats.state == "throttled"  # 12 %: throttled, not dropped
    before = len(endpoint.bodies)
    _send(delivery, 1)
    assert len(endpoint.bodies) == before  # held back: delivered after 10 minutes
    assert delivery.pending() == 1
    assert delivery._heap[0].due == clock["t"] + 600  # throttle_delay, on the emulator clock


def test_dropped_notifications_earn_a_missed_lifecycle_event(emulator, graph, sink):
    emulator.add_user(ALICE)
    sub = subscribe(graph, sink, f"users/{ALICE}/messages")
    emulator._dropped([{"subscriptionId": sub["id"], "changeType": "created"}])
    sink.wait(lambda s: [n["lifecycleEvent"] for n in s.items("/lifecycle")] == ["missed"])
