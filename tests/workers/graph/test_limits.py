"""Per-mailbox politeness: at most 4 requests in flight across processes, slots that expire, the budget."""

from __future__ import annotations

import threading

import pytest
import requests
from requests.adapters import HTTPAdapter

from emulator.faults import FaultRule
from graphhook.core import jobformat
from graphhook.core.errors import ThrottledError
from workers.graph.client import GraphClient
from workers.graph.limits import MailboxLimiter


class CountingAdapter(HTTPAdapter):
    """Counts requests in flight on the wire (shared by every client of the test)."""

    lock = threading.Lock()
    now = 0
    peak = 0

    def send(self, *args, **kwargs):
        with CountingAdapter.lock:
            CountingAdapter.now += 1
            CountingAdapter.peak = max(CountingAdapter.peak, CountingAdapter.now)
        try:
            return super().send(*args, **kwargs)
        finally:
            with CountingAdapter.lock:
                CountingAdapter.now -= 1


def _client(ctx, redis_client, limited: bool) -> GraphClient:
    # A client of its own (session, limiter) per thread: what 8 worker processes would have.
    session = requests.Session()
    session.mount("https://", CountingAdapter())
    limiter = MailboxLimiter(redis_client, concurrency=4) if limited else None
    return GraphClient(ctx.settings.graph_url, ctx.tokens.token, session=session, limiter=limiter)


def _run_eight(emulator, ctx, redis_client, limited: bool) -> int:
    user = emulator.add_user("bob@contoso.com")
    ids = [emulator.deliver("bob@contoso.com", {"subject": f"m{i}"})["id"] for i in range(8)]
    emulator.faults.add(FaultRule(category="graph", status=None, delay=0.3, rate=1.0, path="/messages/"))
    ctx.tokens.token()
    CountingAdapter.now = CountingAdapter.peak = 0
    errors: list[Exception] = []

    def fetch(message_id: str) -> None:
        try:
            _client(ctx, redis_client, limited).get(f"users/{user.id}/messages/{message_id}")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    return CountingAdapter.peak


def test_eight_parallel_fetches_on_one_mailbox_never_exceed_four_in_flight(emulator, ctx, redis_client):
    assert _run_eight(emulator, ctx, redis_client, limited=True) == 4
    throttled = [r for r in emulator.request_log if r["status"] == 429]
    assert throttled == []


def test_without_the_limiter_the_same_load_goes_over_four(emulator, ctx, redis_client):
    # Shows the test above can fail: the same load without the limiter has more than 4 in flight.
    assert _run_eight(emulator, ctx, redis_client, limited=False) > 4


def test_a_killed_process_cannot_keep_its_slots(redis_client):
    limiter = MailboxLimiter(redis_client, concurrency=2)  # slots held for SLOT_SECONDS unless released
    held = [limiter.acquire("carol"), limiter.acquire("carol")]
    assert limiter.in_flight("carol") == 2
    # Its last extension gave the slots 0.3 s more; then the process "died" without releasing them.
    for token in held:
        MailboxLimiter(redis_client, concurrency=2, slot_seconds=0.3).extend("carol", token)
    # Another process waits for them to lapse (max_wait only guards against a hang) and gets a slot.
    assert MailboxLimiter(redis_client, concurrency=2, max_wait=60).acquire("carol")
    assert limiter.in_flight("carol") <= 2


def test_request_budget_per_window_is_shared_and_refuses_past_it(redis_client):
    sleeps: list[float] = []
    clock = iter(range(0, 10_000, 1)).__next__
    first = MailboxLimiter(redis_client, budget=3, max_wait=60, sleep=sleeps.append, clock=clock)
    second = MailboxLimiter(redis_client, budget=3, max_wait=60, sleep=sleeps.append, clock=clock)
    for limiter in (first, second, first):
        limiter.release("dave", limiter.acquire("dave"))
    with pytest.raises(ThrottledError):
        second.acquire("dave")  # the window's 3 requests are used, and it ends later than max_wait
    assert second.waits >= 1


def test_requests_by_address_and_by_id_share_the_mailbox_slots(redis_client):
    limiter = MailboxLimiter(redis_client, concurrency=1, max_wait=0.05, sleep=lambda s: None)
    limiter.learn("Kim@Contoso.com", "ID-1")
    held = limiter.acquire("id-1")
    with pytest.raises(ThrottledError):
        MailboxLimiter(redis_client, concurrency=1, max_wait=0.05, sleep=lambda s: None).acquire("kim@contoso.com")
    limiter.release("id-1", held)


def test_eight_parallel_jobs_in_real_workers_never_trip_the_emulators_concurrency_limit(
        emulator, live_settings, redis_client, start_worker):
    import json

    from graphhook.core import keys
    from tests.conftest import wait_for

    user = emulator.add_user("lee@contoso.com")
    ids = [emulator.deliver("lee@contoso.com", {"subject": f"p{i}"})["_immutableId"] for i in range(8)]  # records carry immutable ids
    emulator.faults.add(FaultRule(category="graph", status=None, delay=0.3, rate=1.0, path="/messages/"))
    for _ in range(8):  # eight processes: without the shared limiter, eight requests would be in flight
        start_worker()
    wait_for(lambda: redis_client.scard(f"rq:workers:{live_settings.queue_name}") >= 8, timeout=60)
    queue = jobformat.queue(live_settings.queue_name, redis_client)
    for mid in ids:
        queue.enqueue("workers.jobs.process_notifications", [{
            "subscriptionId": "sub-limits", "tenantId": live_settings.tenant_id, "changeType": "created",
            "resource": f"Users/{user.id}/Messages/{mid}", "resourceData": {"id": mid}}])
    events = wait_for(lambda: (e := redis_client.lrange(keys.EVENTS, 0, -1)) and len(e) >= 8 and e, timeout=60)
    assert sorted(json.loads(e)["email"]["id"] for e in events) == sorted(ids)
    assert [r for r in emulator.request_log if r["status"] == 429] == []
    assert not emulator.throttle.rejected


def test_a_batch_takes_at_most_four_slots_but_counts_every_part_against_the_budget(redis_client):
    limiter = MailboxLimiter(redis_client, budget=12, max_wait=1, sleep=lambda s: None)
    token = limiter.acquire("max", weight=20, cost=10)
    assert limiter.in_flight("max") == 4
    limiter.release("max", token, weight=20)
    limiter.release("max", limiter.acquire("max", cost=2))
    with pytest.raises(ThrottledError):
        limiter.acquire("max")  # 12 of 12 used in this window


def test_a_mailbox_in_retry_after_is_not_asked_again_by_any_process_before_it_passes(redis_client):
    import time

    from graphhook.core.errors import MailboxBusy

    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    worker = MailboxLimiter(redis_client)
    command_line = MailboxLimiter(redis_client, sleep=wait)  # another process, one that waits its turn
    assert worker.back_off("dora", 30) >= 30
    worker.back_off("dora", 2)  # a shorter wait later does not cut the first one short
    with pytest.raises(MailboxBusy) as busy:
        worker.acquire("dora", defer=True)
    assert 25 < busy.value.seconds <= 30 and busy.value.mailbox == "dora"
    with pytest.raises(ThrottledError):
        MailboxLimiter(redis_client, max_wait=5).acquire("dora")  # would have to wait longer than it may
    seconds, micros = redis_client.time()
    redis_client.set("graphhook:mailbox:dora:until", seconds * 1000 + micros // 1000 + 200)  # 0.2 s left
    command_line.acquire("dora")
    assert len(waits) == 1 and 0 < waits[0] <= 0.2  # waited exactly what was left, once
    assert worker.acquire("erin", defer=True)  # other mailboxes were never held up


def test_the_client_of_a_worker_defers_instead_of_sleeping(emulator, ctx, redis_client):
    from graphhook.core.errors import MailboxBusy

    user = emulator.add_user("fay@contoso.com")
    message = emulator.deliver("fay@contoso.com", {"subject": "throttled"})
    emulator.faults.add(FaultRule(category="graph", status=429, count=1, retry_after=20, path=message["id"]))
    sleeps: list[float] = []
    client = GraphClient(ctx.settings.graph_url, ctx.tokens.token, limiter=MailboxLimiter(redis_client),
                         sleep=sleeps.append)
    client.defer_throttled = True
    with pytest.raises(MailboxBusy) as busy:
        client.get(f"users/{user.id}/messages/{message['id']}")
    assert 15 < busy.value.seconds <= 20 and sleeps == []
    with pytest.raises(MailboxBusy):  # the next request of any job: refused here, never sent
        client.get(f"users/{user.id}/mailFolders")
    assert [r["status"] for r in emulator.request_log if "/users/" in r["path"]] == [429]
    assert emulator.throttle.stats()["early"] == 0
