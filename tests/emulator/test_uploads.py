"""Drafts, attachments, upload sessions and sending a draft: the large-attachment flow, over HTTPS."""

from __future__ import annotations

import base64
import datetime as dt
import os
import re

import pytest
import requests

from emulator.faults import FaultRule
from tests.emulator.conftest import subscribe

ALICE = "alice@contoso.com"
BOB = "bob@contoso.com"
OUTSIDE = "soc@partner.example"
MiB = 1024 * 1024
CHUNK = 3_932_160  # 3.75 MiB, a multiple of 320 KiB as the SDKs slice
LOCATION = re.compile(r"/Messages\('(?P<message>[^']+)'\)/Attachments\('(?P<attachment>[^']+)'\)$")


def _to(*addresses: str) -> list[dict]:
    return [{"emailAddress": {"address": a}} for a in addresses]


def _draft(graph, mailbox: str = ALICE, **fields) -> dict:
    body = {"subject": "Evidence", "body": {"contentType": "Text", "content": "See attached."}, **fields}
    response = graph.post(f"/users/{mailbox}/messages", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _session(graph, message_id: str, size: int, name: str = "capture.pcap", mailbox: str = ALICE, **extra):
    return graph.post(f"/users/{mailbox}/messages/{message_id}/attachments/createUploadSession",
                      json={"AttachmentItem": {"attachmentType": "file", "name": name, "size": size, **extra}})


@pytest.fixture
def uploader(emulator):
    """A session with no credentials of its own: upload URLs are pre-authenticated."""
    session = requests.Session()
    session.verify = str(emulator.ca_path)
    yield session
    session.close()


def _put(uploader, url: str, data: bytes, start: int, total: int, end: int | None = None, **headers):
    end = start + len(data) - 1 if end is None else end
    return uploader.put(url, data=data, timeout=30, headers={
        "Content-Type": "application/octet-stream", "Content-Range": f"bytes {start}-{end}/{total}", **headers})


def _upload(uploader, url: str, data: bytes, start: int = 0) -> requests.Response:
    """PUT every chunk from ``start`` in order; return the last response (asserting the intermediate ones)."""
    for offset in range(start, len(data), CHUNK):
        response = _put(uploader, url, data[offset:offset + CHUNK], offset, len(data))
        if offset + CHUNK < len(data):
            assert response.status_code == 200, response.text
            assert response.json()["nextExpectedRanges"] == [str(offset + CHUNK)]
    return response


def test_create_draft_lands_in_drafts_and_inbox_subscribers_hear_nothing(emulator, graph, sink):
    alice = emulator.add_user(ALICE, "Alice Example")
    inbox_sub = subscribe(graph, sink, f"users/{ALICE}/mailFolders('Inbox')/messages")
    drafts_sub = subscribe(graph, sink, f"users/{ALICE}/mailFolders('drafts')/messages")

    draft = _draft(graph, toRecipients=_to(BOB), ccRecipients=_to(OUTSIDE), importance="Low",
                   internetMessageHeaders=[{"name": "x-case", "value": "42"}])
    drafts_id = graph.get(f"/users/{ALICE}/mailFolders/drafts").json()["id"]
    assert draft["@odata.context"] == f"https://graph.microsoft.com/v1.0/$metadata#users('{alice.id}')/messages/$entity"
    assert draft["isDraft"] is True and draft["isRead"] is True and draft["parentFolderId"] == drafts_id
    assert draft["importance"] == "low" and draft["hasAttachments"] is False
    assert draft["from"]["emailAddress"] == {"name": "Alice Example", "address": ALICE}
    assert [r["emailAddress"]["address"] for r in draft["toRecipients"]] == [BOB]
    assert draft["body"] == {"contentType": "text", "content": "See attached."}
    listed = graph.get(f"/users/{ALICE}/mailFolders/drafts/messages").json()["value"]
    assert [m["id"] for m in listed] == [draft["id"]]
    assert graph.get(f"/users/{ALICE}/mailFolders/inbox/messages").json()["value"] == []

    sink.wait(lambda s: any(n["subscriptionId"] == drafts_sub["id"] and n["changeType"] == "created"
                            and n["resourceData"]["id"] == draft["id"] for n in s.items()))
    assert not [n for n in sink.items() if n["subscriptionId"] == inbox_sub["id"]]

    in_folder = graph.post(f"/users/{ALICE}/mailFolders/archive/messages", json={"subject": "filed"})
    assert in_folder.status_code == 201 and in_folder.json()["isDraft"] is True
    assert graph.get(f"/users/{ALICE}/mailFolders/archive/messages").json()["value"][0]["subject"] == "filed"


def test_create_draft_refuses_bad_payloads(emulator, graph):
    emulator.add_user(ALICE)
    assert graph.post(f"/users/{ALICE}/messages", data="nope", headers={"Content-Type": "text/plain"}).status_code == 400
    assert graph.post(f"/users/{ALICE}/messages", json={"bogus": 1}).json()["error"]["code"] == "RequestBodyRead"
    assert graph.post(f"/users/{ALICE}/messages", json={"isDraft": False}).status_code == 400
    assert graph.post(f"/users/{ALICE}/messages", json={"importance": "urgent"}).status_code == 400
    bad_to = graph.post(f"/users/{ALICE}/messages", json={"toRecipients": [{"address": BOB}]})
    assert bad_to.status_code == 400 and bad_to.json()["error"]["code"] == "ErrorInvalidRecipients"
    assert graph.post("/users/nobody@contoso.com/messages", json={}).status_code == 404
    assert graph.post(f"/users/{ALICE}/mailFolders/nowhere/messages", json={}).status_code == 404
    emulator.app_registration.roles = ("Mail.Read", "Mail.Send")
    assert type(graph)(emulator).post(f"/users/{ALICE}/messages", json={}).status_code == 403


def test_post_small_attachment_and_refuse_more_than_3_mb(emulator, graph):
    emulator.add_user(ALICE)
    draft = _draft(graph)
    url = f"/users/{ALICE}/messages/{draft['id']}/attachments"
    content = os.urandom(1500)
    added = graph.post(url, json={"@odata.type": "#microsoft.graph.fileAttachment", "name": "ioc.txt",
                                  "contentType": "text/plain", "contentBytes": base64.b64encode(content).decode()})
    assert added.status_code == 201, added.text
    attachment = added.json()
    assert attachment["@odata.type"] == "#microsoft.graph.fileAttachment"
    assert attachment["name"] == "ioc.txt" and attachment["size"] == 1500 and attachment["isInline"] is False
    assert base64.b64decode(attachment["contentBytes"]) == content
    (listed,) = graph.get(url).json()["value"]
    assert listed["id"] == attachment["id"] and listed["size"] == 1500
    assert graph.get(f"{url}/{attachment['id']}/$value").content == content
    message = graph.get(f"/users/{ALICE}/messages/{draft['id']}").json()
    assert message["hasAttachments"] is True and message["changeKey"] != draft["changeKey"]

    exactly = graph.post(url, json={"@odata.type": "#microsoft.graph.fileAttachment", "name": "edge.bin",
                                    "contentBytes": base64.b64encode(bytes(3 * MiB)).decode()})
    assert exactly.status_code == 201 and exactly.json()["size"] == 3 * MiB
    too_big = graph.post(url, json={"@odata.type": "#microsoft.graph.fileAttachment", "name": "big.bin",
                                    "contentBytes": base64.b64encode(bytes(3 * MiB + 1)).decode()})
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "ErrorRequestEntityTooLarge"
    assert "upload session" in too_big.json()["error"]["message"]
    inline_big = graph.post(f"/users/{ALICE}/messages", json={"subject": "x", "attachments": [
        {"@odata.type": "#microsoft.graph.fileAttachment", "name": "big.bin",
         "contentBytes": base64.b64encode(bytes(3 * MiB + 1)).decode()}]})
    assert inline_big.status_code == 413
    assert [a["name"] for a in graph.get(url).json()["value"]] == ["ioc.txt", "edge.bin"]
    with_one = _draft(graph, attachments=[{"@odata.type": "#microsoft.graph.fileAttachment", "name": "a.txt",
                                           "contentBytes": base64.b64encode(b"abc").decode()}])
    assert with_one["hasAttachments"] is True

    unhashed = graph.post(url, json={"@odata.type": "microsoft.graph.fileAttachment", "name": "b.txt", "contentBytes": "Yg=="})
    assert unhashed.status_code == 201 and unhashed.json()["@odata.type"] == "#microsoft.graph.fileAttachment"
    item = graph.post(url, json={"@odata.type": "#microsoft.graph.itemAttachment", "name": "original",
                                 "item": {"@odata.type": "microsoft.graph.message", "subject": "the phish"}})
    assert item.status_code == 201 and "item" not in item.json()
    assert graph.post(url, json={"name": "untyped", "contentBytes": "AA=="}).status_code == 400
    assert graph.post(url, json={"@odata.type": "#microsoft.graph.fileAttachment", "name": "x",
                                 "contentBytes": "not base64!"}).status_code == 400
    assert graph.post(f"/users/{ALICE}/messages/nope/attachments", json={
        "@odata.type": "#microsoft.graph.fileAttachment", "name": "x", "contentBytes": "AA=="}).status_code == 404


def test_upload_session_in_chunks_attaches_the_exact_bytes(emulator, graph, uploader):
    alice = emulator.add_user(ALICE)
    draft = _draft(graph)
    data = os.urandom(10_000_000)  # three PUTs: 3,932,160 + 3,932,160 + 2,135,680

    created = _session(graph, draft["id"], len(data), name="capture.pcap", contentType="application/vnd.tcpdump.pcap")
    assert created.status_code == 201, created.text
    session = created.json()
    assert set(session) == {"@odata.context", "uploadUrl", "expirationDateTime", "nextExpectedRanges"}
    assert session["@odata.context"] == "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.uploadSession"
    assert session["nextExpectedRanges"] == ["0-"]
    url = session["uploadUrl"]
    assert url.startswith(f"{emulator.url}/api/v2.0/Users('{alice.id}@{emulator.tenant_id}')/Messages('{draft['id']}')"
                          "/AttachmentSessions('")
    assert re.search(r"\?authtoken=[\w-]{20,}$", url)
    expires = dt.datetime.fromisoformat(session["expirationDateTime"])
    assert abs((expires - emulator.clock.now()).total_seconds() - 3600) < 60

    first = _put(uploader, url, data[:CHUNK], 0, len(data))
    assert first.status_code == 200, first.text
    assert first.json()["nextExpectedRanges"] == [str(CHUNK)]
    assert first.json()["ExpirationDateTime"] == session["expirationDateTime"]  # not extended by uploading
    last = _upload(uploader, url, data, start=CHUNK)
    assert last.status_code == 201, last.text
    assert last.content == b""
    match = LOCATION.search(last.headers["Location"])
    assert match and match["message"] == draft["id"]
    assert last.headers["Location"].startswith(f"{emulator.url}/api/v2.0/Users('{alice.id}@{emulator.tenant_id}')")

    attachments = f"/users/{ALICE}/messages/{draft['id']}/attachments"
    (listed,) = graph.get(f"{attachments}?$select=name,size").json()["value"]
    assert listed["id"] == match["attachment"] and listed["name"] == "capture.pcap" and listed["size"] == len(data)
    meta = graph.get(f"{attachments}/{match['attachment']}").json()
    assert meta["contentType"] == "application/vnd.tcpdump.pcap" and meta["isInline"] is False
    raw = graph.get(f"{attachments}/{match['attachment']}/$value")
    assert raw.status_code == 200 and raw.content == data
    assert graph.get(f"/users/{ALICE}/messages/{draft['id']}").json()["hasAttachments"] is True

    again = _put(uploader, url, data[-10:], len(data) - 10, len(data))
    assert again.status_code == 404  # the session is over once the file is attached


def test_upload_url_rules(emulator, graph, uploader):
    emulator.add_user(ALICE)
    draft = _draft(graph)
    data = os.urandom(7 * MiB)
    url = _session(graph, draft["id"], len(data)).json()["uploadUrl"]

    bearer = _put(uploader, url, data[:CHUNK], 0, len(data), Authorization=f"Bearer {graph.token}")
    assert bearer.status_code == 401 and bearer.json()["error"]["code"] == "InvalidAuthenticationToken"
    forged = _put(uploader, re.sub(r"authtoken=.*$", "authtoken=forged", url), data[:CHUNK], 0, len(data))
    assert forged.status_code == 401
    assert _put(uploader, url.split("?")[0], data[:CHUNK], 0, len(data)).status_code == 401
    wrong_total = _put(uploader, url, data[:CHUNK], 0, len(data) + 1)
    assert wrong_total.status_code == 400 and wrong_total.json()["error"]["code"] == "InvalidContentRange"
    short_body = _put(uploader, url, data[:CHUNK - 1], 0, len(data), end=CHUNK - 1)
    assert short_body.status_code == 400
    past_end = _put(uploader, url, data[:10], len(data) - 5, len(data), end=len(data) + 4)
    assert past_end.status_code == 400
    no_range = uploader.put(url, data=data[:10], headers={"Content-Type": "application/octet-stream"})
    assert no_range.status_code == 400

    skipped = _put(uploader, url, data[CHUNK:2 * CHUNK], CHUNK, len(data))
    assert skipped.status_code == 416
    assert skipped.json()["nextExpectedRanges"] == ["0-"] and skipped.json()["error"]["code"] == "InvalidRange"
    assert _put(uploader, url, data[:CHUNK], 0, len(data)).status_code == 200
    replayed = _put(uploader, url, data[:CHUNK], 0, len(data))
    assert replayed.status_code == 416 and replayed.json()["nextExpectedRanges"] == [str(CHUNK)]
    final = _put(uploader, url, data[CHUNK:], CHUNK, len(data))
    assert final.status_code == 201
    attachment_id = LOCATION.search(final.headers["Location"])["attachment"]
    value = graph.get(f"/users/{ALICE}/messages/{draft['id']}/attachments/{attachment_id}/$value")
    assert value.content == data


def test_injected_faults_reach_the_upload_url_and_the_chunk_can_be_retried(emulator, graph, uploader):
    emulator.add_user(ALICE)
    draft = _draft(graph)
    data = os.urandom(4 * MiB)
    url = _session(graph, draft["id"], len(data)).json()["uploadUrl"]
    emulator.faults.add(FaultRule(status=503, count=1, path="AttachmentSessions", method="PUT", retry_after=2))
    failed = _put(uploader, url, data[:MiB], 0, len(data))
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "2"
    assert _put(uploader, url, data[:MiB], 0, len(data)).json()["nextExpectedRanges"] == [str(MiB)]
    assert _put(uploader, url, data[MiB:], MiB, len(data)).status_code == 201
    logged = emulator.requests("PUT", "AttachmentSessions")
    assert [r["status"] for r in logged] == [503, 200, 201] and {r["app"] for r in logged} == {emulator.client_id}


def test_create_upload_session_validation(emulator, graph):
    emulator.add_user(ALICE)
    emulator.add_user(BOB)
    draft = _draft(graph)
    base = f"/users/{ALICE}/messages/{draft['id']}/attachments/createUploadSession"

    too_big = _session(graph, draft["id"], 150 * MiB + 1)
    assert too_big.status_code == 400
    assert _session(graph, draft["id"], 150 * MiB).status_code == 201
    assert _session(graph, draft["id"], 3 * MiB).status_code == 201
    too_small = _session(graph, draft["id"], 3 * MiB - 1)
    assert too_small.status_code == 400
    assert too_small.json()["error"]["code"] == "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"
    for size in (0, -5, "4000000", 4.5e6, True, None):
        assert _session(graph, draft["id"], size).status_code == 400, size
    assert graph.post(base, json={}).status_code == 400
    assert graph.post(base, json={"AttachmentItem": "file"}).status_code == 400
    assert graph.post(base, json={"AttachmentItem": {"attachmentType": "item", "name": "x", "size": 4 * MiB}}).status_code == 400
    assert graph.post(base, json={"AttachmentItem": {"attachmentType": "file", "size": 4 * MiB}}).status_code == 400

    assert _session(graph, "AAMkdoesnotexist=", 4 * MiB).status_code == 404
    bobs = _draft(graph, mailbox=BOB)
    assert _session(graph, bobs["id"], 4 * MiB).status_code == 404  # Bob's message under Alice's mailbox
    assert _session(graph, bobs["id"], 4 * MiB, mailbox=BOB).status_code == 201

    emulator.app_registration.roles = ("Mail.Read", "Mail.Send")
    assert _session(type(graph)(emulator), draft["id"], 4 * MiB).status_code == 403


def test_cancel_and_expiry(emulator, graph, uploader):
    emulator.add_user(ALICE)
    draft = _draft(graph)
    data = os.urandom(4 * MiB)
    url = _session(graph, draft["id"], len(data)).json()["uploadUrl"]
    assert _put(uploader, url, data[:MiB], 0, len(data)).status_code == 200
    assert uploader.delete(url, headers={"Authorization": f"Bearer {graph.token}"}).status_code == 401
    cancelled = uploader.delete(url)
    assert cancelled.status_code == 204 and cancelled.content == b""
    assert _put(uploader, url, data[MiB:], MiB, len(data)).status_code == 404
    assert uploader.delete(url).status_code == 404
    assert graph.get(f"/users/{ALICE}/messages/{draft['id']}/attachments").json()["value"] == []

    later = _session(graph, draft["id"], len(data)).json()["uploadUrl"]
    assert _put(uploader, later, data[:MiB], 0, len(data)).status_code == 200
    emulator.advance(3601)
    expired = _put(uploader, later, data[MiB:], MiB, len(data))
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
    assert uploader.delete(later).status_code == 401


def test_uploads_count_against_the_mailbox_upload_limit(emulator, graph, uploader):
    emulator.add_user(ALICE)
    draft = _draft(graph)
    emulator.throttle.configure(upload_bytes=6 * MiB)
    data = os.urandom(8 * MiB)
    url = _session(graph, draft["id"], len(data)).json()["uploadUrl"]
    assert _put(uploader, url, data[:4 * MiB], 0, len(data)).status_code == 200
    throttled = _put(uploader, url, data[4 * MiB:], 4 * MiB, len(data))
    assert throttled.status_code == 429 and float(throttled.headers["Retry-After"]) > 0
    assert "IncomingBytes" in throttled.json()["error"]["message"]
    emulator.advance(301)
    assert _put(uploader, url, data[4 * MiB:], 4 * MiB, len(data)).status_code == 201


def test_send_a_draft_with_a_large_attachment(emulator, graph, uploader, sink):
    emulator.add_user(ALICE)
    bob = emulator.add_user(BOB)
    subscribe(graph, sink, f"users/{bob.id}/mailFolders('Inbox')/messages")
    immutable = {"Prefer": 'IdType="ImmutableId"'}
    draft = graph.post(f"/users/{ALICE}/messages", headers=immutable, json={
        "subject": "Phish sample", "body": {"contentType": "HTML", "content": "<p>Sample attached</p>"},
        "toRecipients": _to(BOB), "ccRecipients": _to(OUTSIDE)}).json()
    data = os.urandom(5 * MiB + 123)
    url = _session(graph, draft["id"], len(data), name="sample.eml.zip").json()["uploadUrl"]
    assert _upload(uploader, url, data).status_code == 201
    graph.post(f"/users/{ALICE}/messages/{draft['id']}/attachments", json={
        "@odata.type": "#microsoft.graph.fileAttachment", "name": "note.txt", "contentBytes": "aGk="})

    sent = graph.post(f"/users/{ALICE}/messages/{draft['id']}/send")
    assert sent.status_code == 202 and sent.content == b""
    assert graph.get(f"/users/{ALICE}/mailFolders/drafts/messages").json()["value"] == []
    (copy,) = graph.get(f"/users/{ALICE}/mailFolders/sentitems/messages?$expand=attachments").json()["value"]
    assert copy["isDraft"] is False and copy["subject"] == "Phish sample"
    assert {a["name"]: a["size"] for a in copy["attachments"]} == {"sample.eml.zip": len(data), "note.txt": 2}
    moved = graph.get(f"/users/{ALICE}/messages/{draft['id']}", headers=immutable)
    assert moved.status_code == 200 and moved.json()["parentFolderId"] == copy["parentFolderId"]

    (received,) = graph.get(f"/users/{bob.id}/mailFolders/inbox/messages?$expand=attachments").json()["value"]
    assert received["from"]["emailAddress"]["address"] == ALICE and received["isDraft"] is False
    assert received["isRead"] is False and received["hasAttachments"] is True
    big = next(a for a in received["attachments"] if a["name"] == "sample.eml.zip")
    assert big["size"] == len(data)
    value = graph.get(f"/users/{bob.id}/messages/{received['id']}/attachments/{big['id']}/$value")
    assert value.content == data
    sink.wait(lambda s: any(n["resourceData"]["id"] == received["id"] for n in s.items()))

    (outbound,) = emulator.outbound_mail
    assert outbound["to"] == OUTSIDE and outbound["from"] == ALICE
    assert {a["name"]: a["size"] for a in outbound["message"]["attachments"]} == {"sample.eml.zip": len(data), "note.txt": 2}
    assert base64.b64decode(outbound["message"]["attachments"][0]["contentBytes"]) == data

    assert graph.post(f"/users/{ALICE}/messages/{draft['id']}/send").status_code == 400  # now a sent item


def test_send_refuses_drafts_without_recipients_and_non_drafts(emulator, graph):
    emulator.add_user(ALICE)
    empty = _draft(graph)
    refused = graph.post(f"/users/{ALICE}/messages/{empty['id']}/send")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "ErrorInvalidRecipients"
    assert graph.get(f"/users/{ALICE}/messages/{empty['id']}").json()["isDraft"] is True  # still a draft
    bad = _draft(graph, toRecipients=_to("not-an-address"))
    assert graph.post(f"/users/{ALICE}/messages/{bad['id']}/send").json()["error"]["code"] == "ErrorInvalidRecipients"

    received = emulator.deliver(ALICE, {"subject": "inbound", "from": BOB})
    not_draft = graph.post(f"/users/{ALICE}/messages/{received['id']}/send")
    assert not_draft.status_code == 400 and not_draft.json()["error"]["code"] == "ErrorInvalidOperation"
    assert graph.post(f"/users/{ALICE}/messages/nope/send").status_code == 404
    emulator.app_registration.roles = ("Mail.ReadWrite",)
    assert type(graph)(emulator).post(f"/users/{ALICE}/messages/{empty['id']}/send").status_code == 403
