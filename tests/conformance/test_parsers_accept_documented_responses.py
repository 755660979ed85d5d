"""(ii) graphhook's parsers accept every documented response: records, notifications, delta, subscriptions,
``$batch`` and errors, fed the exact bodies of Microsoft's pages (tests/conformance/examples)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from graphhook.core import keys
from graphhook.core.errors import AccessDeniedError
from graphhook.core.notifications import Collection
from tests.conformance import examples, replay
from workers import runtime
from workers.graph.client import GraphClient, error_for
from workers.records.messages import email_record
from workers.subscriptions import operations, resync

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "email-record.schema.json").read_text())
USER, TENANT = "622eaaff-0683-4862-9de4-f2ec83c2bd98", "84bd8158-6d4d-4958-8b9f-9d6445542f95"


def body(name: str, key: str = "response") -> dict:
    return examples.load(name)[key]["body"]


def _valid(record: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(json.dumps(record)), SCHEMA)


@pytest.mark.parametrize("name", ["message-get-1", "message-get-2", "message-get-3", "message-move"])
def test_documented_messages_become_valid_records(name):
    message = body(name)
    record = email_record(message, mailbox="adelev@contoso.com")
    _valid(record)
    assert record["id"] == message["id"] and record["subject"] == (message.get("subject") or "")
    if "from" in message:
        assert record["from"]["address"] == message["from"]["emailAddress"]["address"].lower()
    if "internetMessageHeaders" in message:
        assert [h["name"] for h in record["headers"]] == [h["name"] for h in message["internetMessageHeaders"]]
    if message.get("body", {}).get("contentType") == "text":
        assert record["bodyText"] == message["body"]["content"] and record["bodyHtml"] is None


def test_documented_attachments_of_each_kind_become_record_entries():
    file_, item, reference = (body("attachment-get-1-file"), body("attachment-get-3-item-expanded"),
                              body("attachment-get-4-reference"))
    message = {**body("message-get-1"), "hasAttachments": True, "attachments": [file_, item, reference]}
    record = email_record(message, mailbox="alexw@contoso.com")
    _valid(record)
    got_file, got_item, got_reference = record["attachments"]
    assert got_file["kind"] == "file" and got_file["size"] == len(base64.b64decode(file_["contentBytes"]))
    assert got_file["extension"] == "docx" and got_file["contentType"] == file_["contentType"]
    assert got_item["kind"] == "item" and got_item["email"]["subject"] == "Reminder - please bring laptop"
    assert got_item["email"]["cc"] == [{"name": "Adele Vance", "address": "adelev@contoso.onmicrosoft.com"}]
    # v1.0 gives no link for a reference attachment: the record says so instead of inventing one.
    assert got_reference["kind"] == "reference" and got_reference["name"] == "Sales Invoice Template.docx"
    assert got_reference["sourceUrl"] is None and got_reference["isInline"] is True


def test_documented_change_notification_is_parsed_to_its_message():
    payload = examples.adapt(examples.load("change-notification")["request"]["body"],
                             {"{user_guid}": USER, "{tenant_guid}": TENANT, "{long_id_string}": "AAMkAGUAAAwTW09AAA=",
                              "{subscription_guid}": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"})
    collection = Collection.parse(json.dumps(payload).encode())
    assert not collection.malformed
    (notification,) = collection.notifications
    ref = notification.message_ref()
    assert (ref.user_id, ref.message_id) == (USER, "AAMkAGUAAAwTW09AAA=")
    assert notification.change_type == "created" and notification.tenant_id == TENANT
    assert notification.to_job()["resourceData"]["@odata.etag"].startswith('W/"')


def test_documented_lifecycle_notifications_are_parsed_as_one_batch():
    payload = examples.load("lifecycle-notifications")["request"]["body"]
    collection = Collection.parse(json.dumps(payload).encode())
    assert not collection.malformed
    assert [n.lifecycle_event for n in collection.notifications] == ["subscriptionRemoved", "missed",
                                                                      "reauthorizationRequired"]
    assert all(n.is_lifecycle and n.resource is None for n in collection.notifications)


def test_documented_delta_pages_drive_a_resync(settings, redis_client):
    first, last = body("delta-query-messages-page"), body("delta-query-messages-next-round")
    session, seen = replay.session([
        ("GET", r"/users/[^/]+/mailFolders/inbox/messages/delta\?", 200, first),
        ("GET", r"\$skiptoken=GwcBoTmPKILK4jLH7mAd1lLU", 200, last),
    ])
    ctx = runtime.build(settings.replace(graph_url=examples.GRAPH_V1), redis_client)
    ctx = runtime.Context(ctx.settings, redis_client, ctx.tokens, GraphClient(examples.GRAPH_V1, lambda: "t", session=session))
    result = resync.resync_folder(ctx, "alice@contoso.com", "inbox", USER)
    assert (result.mode, result.pages, result.seen) == ("baseline", 2, 4)
    assert result.enqueued == 3  # the @removed item is not a new message
    state = redis_client.hgetall(keys.delta(USER, "inbox"))
    assert state[b"deltaLink"].decode() == last["@odata.deltaLink"]
    assert all(r.headers["Prefer"] for r in seen.seen)


def test_documented_subscription_response_is_registered(settings, redis_client):
    documented = body("subscription-post")
    session, seen = replay.session([("POST", r"/v1\.0/subscriptions$", 201, documented)])
    graph = GraphClient(examples.GRAPH_V1, lambda: "t", session=session)
    record = operations.create(graph, redis_client, settings, "alice@contoso.com", "inbox", user_id=USER)
    assert record.id == documented["id"] and record.expiration == documented["expirationDateTime"]
    assert record.resource == documented["resource"]
    sent = json.loads(seen.seen[0].body)
    assert set(sent) <= set(examples.load("subscription-post")["request"]["body"]) | {"lifecycleNotificationUrl"}


def test_documented_batch_answer_maps_each_part():
    documented = body("json-batching")
    shifted = {"responses": [{**p, "id": str(int(p["id"]) - 1)} for p in documented["responses"]]}  # ids adapted
    session, _ = replay.session([("POST", r"/v1\.0/\$batch$", 200, shifted)])
    graph = GraphClient(examples.GRAPH_V1, lambda: "t", session=session)
    answers = graph.batch([{"method": "GET", "url": f"users/{USER}/messages/{n}"} for n in range(3)])
    assert [a["status"] for a in answers] == [200, 403, 403]
    errors = [error_for(a["status"], a["body"]) for a in answers[1:]]
    assert all(isinstance(e, AccessDeniedError) for e in errors)
    assert [e.code for e in errors] == ["403", "Authorization_RequestDenied"]  # an empty code falls back to the status
    assert errors[0].graph_message == "You do not have the required permissions to access this item."
