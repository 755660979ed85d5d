"""Per-mailbox throttling, $batch, injected faults and the request log."""

from __future__ import annotations

import threading

import pytest
import requests

from emulator.faults import FaultRule

ALICE = "alice@contoso.com"


def _parallel(calls):
    results = [None] * len(calls)

    def run(i, call):
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_fifth_concurrent_request_on_a_mailbox_is_throttled(emulator, graph):
    emulator.add_user(ALICE)
    emulator.add_user("bob@contoso.com")
    emulator.faults.add(FaultRule(status=None, delay=1.0, rate=1.0, path="/messages$"))
    responses = _parallel([lambda: graph.get(f"/users/{ALICE}/messages") for _ in range(5)]
                          + [lambda: graph.get("/users/bob@contoso.com/messages")])
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 200, 200, 200, 429]  # bob's mailbox has its own four
    (throttled,) = [r for r in responses if r.status_code == 429]
    assert throttled.json()["error"]["code"] == "ApplicationThrottled"
    assert throttled.json()["error"]["message"] == "Application is over its MailboxConcurrency limit."
    assert float(throttled.headers["Retry-After"]) > 0
    assert emulator.requests("GET", "/messages", status=429)


def test_request_rate_limit_and_its_window_on_the_clock(emulator, graph):
    emulator.add_user(ALICE)
    emulator.throttle.configure(requests=5)
    for _ in range(5):
        assert graph.get(f"/users/{ALICE}/messages").status_code == 200
    refused = graph.get(f"/users/{ALICE}/mailFolders")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "TooManyRequests"
    assert 590 <= float(refused.headers["Retry-After"]) <= 600
    emulator.advance(601)
    assert graph.get(f"/users/{ALICE}/messages").status_code == 200
    emulator.throttle.configure(enabled=False, requests=10_000)


def test_throttling_can_be_switched_off(emulator, graph):
    emulator.add_user(ALICE)
    emulator.throttle.configure(enabled=False)
    emulator.faults.add(FaultRule(status=None, delay=0.5, rate=1.0, path="/messages$"))
    responses = _parallel([lambda: graph.get(f"/users/{ALICE}/messages") for _ in range(6)])
    assert {r.status_code for r in responses} == {200}


def test_batch_limits_dependencies_and_out_of_order_answers(emulator, graph):
    emulator.add_user(ALICE)
    message = emulator.deliver(ALICE, {"subject": "batched"})
    too_many = graph.post("/$batch", json={"requests": [
        {"id": str(i), "method": "GET", "url": f"/users/{ALICE}"} for i in range(21)]})
    assert too_many.status_code == 400
    assert graph.post("/$batch", json={"nope": []}).status_code == 400

    ok = graph.post("/$batch", json={"requests": [
        {"id": "1", "method": "GET", "url": f"/users/{ALICE}/messages/{message['id']}?$select=subject"},
        {"id": "2", "method": "GET", "url": f"/users/{ALICE}/messages/does-not-exist"},
        {"id": "3", "method": "PATCH", "url": f"/users/{ALICE}/messages/{message['id']}",
         "headers": {"Content-Type": "application/json"}, "body": {"isRead": True}},
    ]})
    assert ok.status_code == 200
    by_id = {r["id"]: r for r in ok.json()["responses"]}
    assert by_id["1"]["status"] == 200 and by_id["1"]["body"]["subject"] == "batched"
    assert by_id["2"]["status"] == 404
    assert by_id["3"]["status"] == 200 and by_id["3"]["body"]["isRead"] is True

    chained = graph.post("/$batch", json={"requests": [
        {"id": "a", "method": "GET", "url": f"/users/{ALICE}/messages/missing"},
        {"id": "b", "method": "DELETE", "url": f"/users/{ALICE}/messages/{message['id']}", "dependsOn": ["a"]},
        {"id": "c", "method": "GET", "url": f"/users/{ALICE}/mailFolders/inbox"},
        {"id": "d", "method": "GET", "url": f"/users/{ALICE}", "dependsOn": ["c"]},
    ]}).json()["responses"]
    statuses = {r["id"]: r["status"] for r in chained}
    assert statuses == {"a": 404, "b": 424, "c": 200, "d": 200}
    assert graph.get(f"/users/{ALICE}/messages/{message['id']}").status_code == 200  # b never ran
    missing_type = graph.post("/$batch", json={"requests": [
        {"id": "1", "method": "PATCH", "url": f"/users/{ALICE}/messages/{message['id']}", "body": {"isRead": False}}]})
    assert missing_type.json()["responses"][0]["status"] == 400


def test_batch_sub_requests_are_throttled_one_by_one(emulator, graph):
    emulator.add_user(ALICE)
    emulator.throttle.configure(concurrency=2)
    emulator.faults.add(FaultRule(status=None, delay=0.5, rate=1.0, path="/messages$"))
    answer = graph.post("/$batch", json={"requests": [
        {"id": str(i), "method": "GET", "url": f"/users/{ALICE}/messages"} for i in range(4)]})
    assert answer.status_code == 200
    statuses = sorted(r["status"] for r in answer.json()["responses"])
    assert statuses == [200, 200, 429, 429]
    throttled = [r for r in answer.json()["responses"] if r["status"] == 429]
    assert all("Retry-After" in r["headers"] for r in throttled)
    assert len(emulator.requests("GET", f"/users/{ALICE}/messages")) == 4
    assert all(r["batch"] for r in emulator.requests("GET", f"/users/{ALICE}/messages"))


def test_injected_errors_resets_and_timeouts(emulator, graph):
    emulator.add_user(ALICE)
    url = f"/users/{ALICE}/messages"
    rule = emulator.faults.add(FaultRule(status=503, count=2, retry_after=2.5))
    first, second, third = (graph.get(url) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.headers["Retry-After"] == "2.5" and rule.fired == 2

    emulator.faults.add(FaultRule(status=504, count=1, retry_after=None))
    gateway = graph.get(url)
    assert gateway.status_code == 504 and "Retry-After" not in gateway.headers

    emulator.faults.add(FaultRule(status=0, count=1, path="/messages$"))
    with pytest.raises(requests.ConnectionError):
        graph.get(url)

    emulator.faults.add(FaultRule(status=None, delay=1.5, count=1))
    with pytest.raises(requests.Timeout):
        graph.session.get(graph.url(url), headers={"Authorization": f"Bearer {graph.token}"}, timeout=0.5)
    assert graph.get(url).status_code == 200

    emulator.faults.add(FaultRule(category="token", status=503, count=1))
    with pytest.raises(requests.HTTPError):
        graph.new_token()
    assert [r["status"] for r in emulator.requests(path=url)][:3] == [503, 503, 200]


def test_fault_rate_is_roughly_honoured(emulator, graph):
    emulator.add_user(ALICE)
    emulator.faults = type(emulator.faults)(seed=7)
    emulator.faults.add(FaultRule(status=503, rate=0.3))
    statuses = [graph.get(f"/users/{ALICE}").status_code for _ in range(100)]
    assert 15 <= statuses.count(503) <= 45
    emulator.faults.clear()
    assert graph.get(f"/users/{ALICE}").status_code == 200


def test_fault_rules_are_validated():
    with pytest.raises(ValueError):
        FaultRule(status=418, rate=0.5)
    with pytest.raises(ValueError):
        FaultRule(rate=2)
    with pytest.raises(ValueError):
        FaultRule(status=None, rate=0.5)
