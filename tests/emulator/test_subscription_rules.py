"""Subscription rules from graph-protocol.md §1: handshake, lifetimes, clientState, CRUD, 404s and the write limit."""

from __future__ import annotations

import datetime as dt

import pytest

from emulator import subscriptions as subs_module
from emulator.query import parse_time
from tests.emulator.conftest import subscribe

ALICE = "alice@contoso.com"
RESOURCE = f"users/{ALICE}/mailFolders('Inbox')/messages"


def _body(emulator, sink, **extra):
    return {"changeType": "created", "notificationUrl": f"{sink.url}/notifications", "resource": RESOURCE,
            "expirationDateTime": (emulator.clock.now() + dt.timedelta(hours=2)).isoformat(), **extra}


def _expiry_minutes(emulator, response):
    return (parse_time(response.json()["expirationDateTime"]) - emulator.clock.now()).total_seconds() / 60


def test_handshake_validates_both_urls_with_the_decoded_token(emulator, graph, sink):
    emulator.add_user(ALICE)
    sub = subscribe(graph, sink, RESOURCE, lifecycleNotificationUrl=f"{sink.url}/notifications")
    assert len(sink.handshakes) == 2  # same URL twice: two validation requests
    assert sink.handshakes[0].startswith("Validation: Testing client application reachability for subscription")
    assert " " in sink.handshakes[0] and ":" in sink.handshakes[0]
    assert sub["resource"] == RESOURCE and sub["changeType"] == "created,updated,deleted"
    assert {"applicationId", "creatorId", "notificationQueryOptions", "encryptionCertificate"} <= set(sub)


@pytest.mark.parametrize("mode, code, text", [
    ("wrong", "ValidationError", "Response must exactly match validationToken query parameter."),
    ("500", "ValidationError", "Notification endpoint must respond with 200 OK to validation request."),
    ("html", "ValidationError", "text/plain"),
])
def test_failed_handshake_is_a_400_with_the_observed_body(emulator, graph, sink, mode, code, text):
    emulator.add_user(ALICE)
    sink.handshake_mode = mode
    response = graph.post("/subscriptions", json=_body(emulator, sink))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code and text in error["message"]
    assert {"date", "request-id", "client-request-id"} <= set(error["innerError"])
    assert emulator.subscriptions.items == {}


def test_handshake_past_the_time_limit_times_out(emulator, graph, sink, monkeypatch):
    emulator.add_user(ALICE)
    monkeypatch.setattr(subs_module, "VALIDATION_TIMEOUT", 0.5)  # 10 s at Microsoft; shortened to keep the test quick
    sink.handshake_mode = "slow"
    response = graph.post("/subscriptions", json=_body(emulator, sink))
    assert response.status_code == 400
    assert response.json()["error"] == {**response.json()["error"], "code": "InvalidRequest",
                                        "message": "Subscription validation request timed out."}


def test_notification_urls_must_be_https(emulator, graph, sink):
    emulator.add_user(ALICE)
    body = _body(emulator, sink, notificationUrl=sink.url.replace("https://", "http://") + "/notifications")
    assert graph.post("/subscriptions", json=body).status_code == 400


def test_lifetime_floor_maximum_reject_and_clamp(emulator, graph, sink):
    emulator.add_user(ALICE)
    short = graph.post("/subscriptions", json=_body(emulator, sink, expirationDateTime=(
        emulator.clock.now() + dt.timedelta(minutes=10)).isoformat()))
    assert short.status_code == 201 and 44.5 <= _expiry_minutes(emulator, short) <= 45.5

    far = (emulator.clock.now() + dt.timedelta(minutes=10080 + 60)).isoformat()
    rejected = graph.post("/subscriptions", json=_body(emulator, sink, expirationDateTime=far))
    assert rejected.status_code == 400
    assert "10080 minutes" in rejected.json()["error"]["message"]
    at_max = graph.post("/subscriptions", json=_body(emulator, sink, expirationDateTime=(
        emulator.clock.now() + dt.timedelta(minutes=10079)).isoformat()))
    assert at_max.status_code == 201

    emulator.expiry_mode = "clamp"
    clamped = graph.post("/subscriptions", json=_body(emulator, sink, expirationDateTime=far))
    assert clamped.status_code == 201 and 10079 <= _expiry_minutes(emulator, clamped) <= 10080.5
    renewed = graph.patch(f"/subscriptions/{clamped.json()['id']}", json={"expirationDateTime": far})
    assert renewed.status_code == 200 and _expiry_minutes(emulator, renewed) <= 10080.5


def test_client_state_is_at_most_128_characters(emulator, graph, sink):
    emulator.add_user(ALICE)
    assert graph.post("/subscriptions", json=_body(emulator, sink, clientState="x" * 128)).status_code == 201
    too_long = graph.post("/subscriptions", json=_body(emulator, sink, clientState="x" * 129))
    assert too_long.status_code == 400 and "128" in too_long.json()["error"]["message"]


def test_list_get_renew_reauthorize_delete_and_404s(emulator, graph, sink):
    emulator.add_user(ALICE)
    sub = subscribe(graph, sink, RESOURCE)
    listed = graph.get("/subscriptions").json()
    assert listed["@odata.context"].endswith("$metadata#subscriptions") and [s["id"] for s in listed["value"]] == [sub["id"]]
    assert graph.get(f"/subscriptions/{sub['id']}").json()["id"] == sub["id"]
    later = (emulator.clock.now() + dt.timedelta(days=3)).isoformat()
    renewed = graph.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": later})
    assert renewed.status_code == 200 and renewed.json()["expirationDateTime"] != sub["expirationDateTime"]
    no_lifecycle_change = graph.patch(f"/subscriptions/{sub['id']}", json={"lifecycleNotificationUrl": f"{sink.url}/x"})
    assert no_lifecycle_change.status_code == 400
    assert graph.post(f"/subscriptions/{sub['id']}/reauthorize").status_code == 204
    assert graph.delete(f"/subscriptions/{sub['id']}").status_code == 204
    unknown = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
    for response in (graph.get(f"/subscriptions/{unknown}"), graph.patch(f"/subscriptions/{unknown}", json={}),
                     graph.delete(f"/subscriptions/{sub['id']}"), graph.post(f"/subscriptions/{unknown}/reauthorize")):
        assert response.status_code == 404 and response.json()["error"]["code"] == "ResourceNotFound"


def test_write_limit_is_429_with_retry_after(emulator, graph, sink):
    emulator.add_user(ALICE)
    sub = subscribe(graph, sink, RESOURCE)
    for _ in range(subs_module.WRITE_LIMIT - 1):  # the create above was one write
        assert emulator.subscriptions.take_write(emulator.client_id) is None
    refused = graph.patch(f"/subscriptions/{sub['id']}", json={})
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 21
    assert graph.get("/subscriptions").status_code == 200  # reads are not writes
    emulator.advance(subs_module.WRITE_WINDOW + 1)
    assert graph.patch(f"/subscriptions/{sub['id']}", json={}).status_code == 200


def test_resource_and_rich_notification_rules(emulator, graph, sink):
    emulator.add_user(ALICE)
    assert graph.post("/subscriptions", json=_body(emulator, sink, resource="users/nobody@x.example/messages")).status_code == 404
    assert graph.post("/subscriptions", json=_body(emulator, sink, resource="me/messages")).status_code == 400
    assert graph.post("/subscriptions", json=_body(emulator, sink, changeType="read")).status_code == 400
    bad_filter = _body(emulator, sink, resource=RESOURCE + "?$filter=nosuch eq 1 and")
    assert graph.post("/subscriptions", json=bad_filter).status_code == 400
    for resource in (RESOURCE, RESOURCE + "?$select=subject,body", RESOURCE + "?$select=subject&$top=5"):
        rich = _body(emulator, sink, resource=resource, includeResourceData=True,
                     encryptionCertificate="MIIB", encryptionCertificateId="k1")
        assert graph.post("/subscriptions", json=rich).status_code == 400
