"""Hostile POSTs cost a bounded amount of work (Redis commands and log lines are counted, not timed), a deep
body is a 400 and never a 500, and a legitimate POST still gets its 202 while a flood runs."""

from __future__ import annotations

import json
import threading
import uuid

import requests

from graphhook.core import jobformat
from graphhook.core.notifications import Collection
from receiver.app import create_app

from .conftest import STATE, change, register

LIMIT = 1000  # GRAPHHOOK_MAX_NOTIFICATIONS's default (the tests use the default settings)


def _hmgets(redis_client) -> int:
    """Subscription lookups Redis has served since the last CONFIG RESETSTAT."""
    return int(redis_client.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0))


def _rejection_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "graphhook.receiver" and "reject" in r.getMessage()]


def _jobs(settings, redis_client):
    return jobformat.queue(settings.queue_name, redis_client).jobs


def test_more_items_than_the_bound_is_413_before_any_lookup_or_per_item_log(emulator, settings, redis_client, caplog):
    register(redis_client, emulator.tenant_id)
    client = create_app(settings, redis_client=redis_client).test_client()
    flood = {"value": [{"subscriptionId": f"s{i}", "tenantId": "t"} for i in range(LIMIT * 20)]}  # ~0.7 MB
    redis_client.config_resetstat()
    with caplog.at_level("INFO"):
        response = client.post("/notifications", json=flood)
    assert response.status_code == 413
    assert f"at most {LIMIT}" in response.get_data(as_text=True)
    assert _hmgets(redis_client) == 0
    assert len(_rejection_lines(caplog)) == 1
    assert b'reason="too_many_notifications",tenant=""} 1.0' in client.application.config["METRICS"].render()[0]  # the private listener
    # At the bound, the POST is looked at as usual.
    assert client.post("/notifications", json={"value": [change(emulator.tenant_id)] * LIMIT}).status_code == 202


def test_an_over_long_collection_is_refused_before_the_parser_reaches_its_end(emulator, settings, redis_client):
    register(redis_client, emulator.tenant_id)
    client = create_app(settings, redis_client=redis_client).test_client()
    items = ",".join(f'{{"subscriptionId":"s{i}","tenantId":"t"}}' for i in range(LIMIT * 30))  # ~1.2 MB
    redis_client.config_resetstat()
    # Cut off before its end: only a parser that read all 30,000 items would find that it is not JSON (400).
    response = client.post("/notifications", data='{"value":[' + items, content_type="application/json")
    assert response.status_code == 413
    assert f"at most {LIMIT} notifications" in response.get_data(as_text=True)
    assert _hmgets(redis_client) == 0
    assert _jobs(settings, redis_client) == []


def test_a_body_too_dense_for_its_notifications_is_413_and_nothing_is_enqueued(emulator, settings, redis_client):
    """1000 notifications (the bound) of our own subscription, each carrying 100 extra values: nothing Graph sends,
    and parsing it cost as much as 100,000 notifications would."""
    register(redis_client, emulator.tenant_id)
    client = create_app(settings, redis_client=redis_client).test_client()
    dense = {"value": [change(emulator.tenant_id, message=f"m{i}", resourceData={"id": f"m{i}", "x": [0] * 100})
                       for i in range(LIMIT)]}
    redis_client.config_resetstat()
    response = client.post("/notifications", json=dense)
    assert response.status_code == 413
    assert "values" in response.get_data(as_text=True)
    assert _hmgets(redis_client) == 0
    assert _jobs(settings, redis_client) == []


def test_graph_shaped_rich_notifications_at_the_bound_are_within_the_value_bound():
    """What Graph sends is never refused by the value bound: 1000 rich items, with Graph's fields and validation tokens."""
    item = {"subscriptionId": str(uuid.uuid4()), "subscriptionExpirationDateTime": "2030-01-01T00:00:00.0000000Z",
            "changeType": "created", "clientState": STATE, "tenantId": str(uuid.uuid4()), "id": "lsgTZMr9KwAAA",
            "resource": f"Users/{uuid.uuid4()}/Messages/AAMkAGUwNjQ4ZjIxLTQ3Y2YtNDViMi1iZjc1LTNmYjNkZDRkNGZlMABGAAA=",
            "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "@odata.id": "Users/u/Messages/AAMk=",
                             "@odata.etag": 'W/"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf"', "id": "AAMk="},
            "encryptedContent": {"data": "A" * 4000, "dataSignature": "B" * 44, "dataKey": "C" * 344,
                                 "encryptionCertificateId": "MySelfSignedCert/DDC9651A-D7BC-4D74-86BC-A8923584B0AB",
                                 "encryptionCertificateThumbprint": "07293748CC064953A3052FB978C735FB89E61C3D"}}
    body = json.dumps({"value": [item] * LIMIT, "validationTokens": ["eyJ0eXAi.eyJhdWQi.c2ln"] * 3}).encode()
    assert len(Collection.parse(body, max_items=LIMIT).notifications) == LIMIT


def test_a_hostile_post_at_the_bound_costs_one_lookup_per_distinct_id_and_one_log_line(
        emulator, settings, redis_client, caplog):
    client = create_app(settings, redis_client=redis_client).test_client()
    same = {"value": [{"subscriptionId": "s-unknown", "tenantId": "t", "changeType": "created",
                       "resource": f"Users/u1/Messages/m{i}"} for i in range(LIMIT)]}
    random_ids = {"value": [{"subscriptionId": str(uuid.uuid4()), "tenantId": "t", "changeType": "created",
                             "resource": "Users/u1/Messages/m"} for _ in range(LIMIT)]}
    junk = {"value": [{"subscriptionId": f"s{i}", "tenantId": "t"} for i in range(LIMIT)]}  # every item malformed
    for body, lookups in ((same, 1), (random_ids, LIMIT), (junk, 0)):
        redis_client.config_resetstat()
        caplog.clear()
        with caplog.at_level("INFO"):
            assert client.post("/notifications", json=body).status_code == 202
        assert _hmgets(redis_client) == lookups
        lines = _rejection_lines(caplog)
        assert len(lines) == 1 and f"rejected {LIMIT} of {LIMIT}" in lines[0], lines
    assert _jobs(settings, redis_client) == []


def test_deeply_nested_resource_data_with_a_valid_client_state_is_400_not_500(receiver, emulator, redis_client,
                                                                               settings):
    register(redis_client, emulator.tenant_id)
    nested: dict = {"id": "m1"}
    for _ in range(500):
        nested = {"a": nested}
    body = json.dumps({"value": [change(emulator.tenant_id, resourceData=nested)]})
    response = requests.post(f"{receiver.url}/notifications", data=body, verify=str(emulator.ca_path),
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "nested" in response.text
    assert _jobs(settings, redis_client) == []


def test_a_legitimate_post_gets_its_202_while_a_flood_runs(receiver, emulator, redis_client, settings):
    register(redis_client, emulator.tenant_id)
    limit = LIMIT
    url, ca = f"{receiver.url}/notifications", str(emulator.ca_path)
    over = json.dumps({"value": [{"subscriptionId": f"s{i}", "tenantId": "t"} for i in range(limit + 1)]})
    at = json.dumps({"value": [{"subscriptionId": str(uuid.uuid4()), "tenantId": "t", "changeType": "created",
                                "resource": "Users/u1/Messages/m"} for _ in range(limit)]})
    stop = threading.Event()
    answers: list[int] = []
    lock = threading.Lock()

    def flood(body: str) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                status = session.post(url, data=body, verify=ca, headers={"Content-Type": "application/json"},
                                      timeout=120).status_code
                with lock:
                    answers.append(status)

    threads = [threading.Thread(target=flood, args=(over if i % 2 else at,), daemon=True) for i in range(12)]
    for t in threads:
        t.start()
    try:
        from tests.conftest import wait_for

        wait_for(lambda: len(answers) >= 12, timeout=120)  # the flood is under way
        legit = requests.post(url, json={"value": [change(emulator.tenant_id, message="legit")]}, verify=ca,
                              timeout=120)
        assert legit.status_code == 202
        assert all(t.is_alive() for t in threads)  # still flooding when the answer came
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert set(answers) <= {202, 413}
    jobs = _jobs(settings, redis_client)
    assert [item["resource"] for job in jobs for item in job.args[0]] == ["Users/u1/Messages/legit"]
    assert STATE not in json.dumps([job.args for job in jobs])
