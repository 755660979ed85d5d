"""Mailbox actions: move, copy, delete, permanentDelete, PATCH, forward, reply, sendMail — and what subscribers hear."""

from __future__ import annotations

import base64

from tests.emulator.conftest import subscribe

ALICE = "alice@contoso.com"


def _changes(sink, path="/notifications"):
    return [(n["changeType"], n["resourceData"]["id"]) for n in sink.items(path)]


def test_move_gives_a_new_id_and_tells_both_folders(emulator, graph, sink):
    emulator.add_user(ALICE)
    message = emulator.deliver(ALICE, {"subject": "Suspicious", "from": "x@evil.example"})
    graph.post(f"/users/{ALICE}/mailFolders/inbox/childFolders", json={"displayName": "Quarantine"})
    subscribe(graph, sink, f"users/{ALICE}/mailFolders('Inbox')/messages")
    quarantine_sub = subscribe(graph, sink, f"users/{ALICE}/mailFolders/deleteditems/messages")

    moved = graph.post(f"/users/{ALICE}/messages/{message['id']}/move", json={"destinationId": "deleteditems"})
    assert moved.status_code == 201
    new = moved.json()
    assert new["id"] != message["id"] and new["subject"] == "Suspicious"
    assert new["parentFolderId"] == graph.get(f"/users/{ALICE}/mailFolders/deleteditems").json()["id"]
    assert graph.get(f"/users/{ALICE}/messages/{message['id']}").status_code == 404
    assert graph.get(f"/users/{ALICE}/messages/{new['id']}").json()["subject"] == "Suspicious"

    items = sink.wait(lambda s: len(s.items()) >= 2 and s.items())
    seen = {(n["changeType"], n["resourceData"]["id"], n["subscriptionId"] == quarantine_sub["id"]) for n in items}
    assert ("deleted", message["id"], False) in seen
    assert ("created", new["id"], True) in seen


def test_move_with_immutable_ids_keeps_the_id(emulator, graph):
    emulator.add_user(ALICE)
    emulator.deliver(ALICE, {"subject": "Keep my id"})
    prefer = {"Prefer": 'IdType="ImmutableId"'}
    (listed,) = graph.get(f"/users/{ALICE}/messages", headers=prefer).json()["value"]
    moved = graph.post(f"/users/{ALICE}/messages/{listed['id']}/move", json={"destinationId": "archive"}, headers=prefer)
    assert moved.status_code == 201 and moved.json()["id"] == listed["id"]
    assert graph.get(f"/users/{ALICE}/messages/{listed['id']}").json()["subject"] == "Keep my id"


def test_copy_is_201_with_its_own_id(emulator, graph):
    emulator.add_user(ALICE)
    message = emulator.deliver(ALICE, {"subject": "Evidence"})
    copied = graph.post(f"/users/{ALICE}/messages/{message['id']}/copy", json={"destinationId": "archive"})
    assert copied.status_code == 201
    assert copied.json()["id"] != message["id"]
    assert copied.json()["internetMessageId"] == message["internetMessageId"]
    assert graph.get(f"/users/{ALICE}/messages/{message['id']}").status_code == 200
    assert graph.post(f"/users/{ALICE}/messages/{message['id']}/move", json={"destinationId": "nowhere"}).status_code == 404


def test_delete_is_a_soft_delete_into_recoverable_items_and_permanent_delete_purges(emulator, graph, sink):
    emulator.add_user(ALICE)
    first = emulator.deliver(ALICE, {"subject": "phish 1"})
    second = emulator.deliver(ALICE, {"subject": "phish 2"})
    subscribe(graph, sink, f"users/{ALICE}/messages")

    assert graph.delete(f"/users/{ALICE}/messages/{first['id']}").status_code == 204
    assert graph.get(f"/users/{ALICE}/messages/{first['id']}").status_code == 404
    assert graph.get(f"/users/{ALICE}/mailFolders/deleteditems/messages").json()["value"] == []
    recoverable = graph.get(f"/users/{ALICE}/mailFolders/recoverableitemsdeletions/messages").json()["value"]
    assert [m["subject"] for m in recoverable] == ["phish 1"]
    assert [m["subject"] for m in graph.get(f"/users/{ALICE}/messages").json()["value"]] == ["phish 2"]

    assert graph.post(f"/users/{ALICE}/messages/{second['id']}/permanentDelete").status_code == 204
    assert graph.get(f"/users/{ALICE}/messages").json()["value"] == []
    assert [m["subject"] for m in emulator.mail.purged] == ["phish 2"]
    assert graph.delete(f"/users/{ALICE}/messages/{second['id']}").status_code == 404
    sink.wait(lambda s: {("deleted", first["id"]), ("deleted", second["id"])} <= set(_changes(s)))


def test_patch_updates_flags_and_emits_updated(emulator, graph, sink):
    emulator.add_user(ALICE)
    message = emulator.deliver(ALICE, {"subject": "Tag me"})
    subscribe(graph, sink, f"users/{ALICE}/mailFolders('Inbox')/messages")
    change_key = message["changeKey"]
    response = graph.patch(f"/users/{ALICE}/messages/{message['id']}", json={
        "isRead": True, "categories": ["Phishing"], "flag": {"flagStatus": "flagged"}, "importance": "high"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["isRead"] is True and body["categories"] == ["Phishing"]
    assert body["flag"]["flagStatus"] == "flagged" and body["importance"] == "high"
    assert body["changeKey"] != change_key
    sink.wait(lambda s: ("updated", message["id"]) in _changes(s))
    refused = graph.patch(f"/users/{ALICE}/messages/{message['id']}", json={"subject": "rewritten"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "ErrorInvalidPropertyUpdateSentMessage"
    assert graph.patch(f"/users/{ALICE}/messages/{message['id']}", json={"bogus": 1}).status_code == 400
    assert graph.patch(f"/users/{ALICE}/messages/{message['id']}", json={"isRead": "yes"}).status_code == 400


def test_filtered_subscription_hears_deleted_when_a_message_stops_matching(emulator, graph, sink):
    emulator.add_user(ALICE)
    subscribe(graph, sink, f"users/{ALICE}/mailFolders('Inbox')/messages?$filter=isRead eq false")
    message = emulator.deliver(ALICE, {"subject": "unread"})
    emulator.deliver(ALICE, {"subject": "already read", "isRead": True})
    sink.wait(lambda s: ("created", message["id"]) in _changes(s))
    graph.patch(f"/users/{ALICE}/messages/{message['id']}", json={"isRead": True})
    sink.wait(lambda s: ("deleted", message["id"]) in _changes(s))
    assert len(_changes(sink)) == 2  # the read message never matched


def test_send_mail_saves_a_copy_and_delivers_inside_the_tenant(emulator, graph, sink):
    emulator.add_user(ALICE)
    bob = emulator.add_user("bob@contoso.com")
    subscribe(graph, sink, f"users/{bob.id}/mailFolders('Inbox')/messages")
    response = graph.post(f"/users/{ALICE}/sendMail", json={"message": {
        "subject": "Heads-up", "body": {"contentType": "Text", "content": "Phish going round"},
        "toRecipients": [{"emailAddress": {"address": "bob@contoso.com"}}],
        "ccRecipients": [{"emailAddress": {"address": "soc@partner.example"}}]}})
    assert response.status_code == 202 and response.text == ""
    sent = graph.get(f"/users/{ALICE}/mailFolders/sentitems/messages").json()["value"]
    assert [m["subject"] for m in sent] == ["Heads-up"]
    (inbox,) = graph.get(f"/users/{bob.id}/mailFolders/inbox/messages").json()["value"]
    assert inbox["from"]["emailAddress"]["address"] == ALICE
    assert inbox["internetMessageId"] == sent[0]["internetMessageId"]
    assert [m["to"] for m in emulator.outbound_mail] == ["soc@partner.example"]
    sink.wait(lambda s: ("created", inbox["id"]) in _changes(s))

    quiet = graph.post(f"/users/{ALICE}/sendMail", json={"saveToSentItems": False, "message": {
        "subject": "no copy", "toRecipients": [{"emailAddress": {"address": "bob@contoso.com"}}]}})
    assert quiet.status_code == 202
    assert len(graph.get(f"/users/{ALICE}/mailFolders/sentitems/messages").json()["value"]) == 1
    empty = graph.post(f"/users/{ALICE}/sendMail", json={"message": {"subject": "nobody"}})
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "ErrorInvalidRecipients"


def test_forward_reply_and_reply_all(emulator, graph):
    emulator.add_user(ALICE)
    emulator.add_user("secops@contoso.com")
    emulator.add_user("carol@contoso.com")
    message = emulator.deliver(ALICE, {"subject": "Invoice", "from": "carol@contoso.com", "body": "pay",
                                       "to": [ALICE, "dave@contoso.com"],
                                       "attachments": [{"name": "inv.html", "content": b"<html/>"}]})
    url = f"/users/{ALICE}/messages/{message['id']}"
    forwarded = graph.post(f"{url}/forward", json={"comment": "FYI, looks like phishing",
                                                   "toRecipients": [{"emailAddress": {"address": "secops@contoso.com"}}]})
    assert forwarded.status_code == 202
    (copy,) = graph.get("/users/secops@contoso.com/messages?$expand=attachments").json()["value"]
    assert copy["subject"] == "FW: Invoice" and "looks like phishing" in copy["body"]["content"]
    assert [a["name"] for a in copy["attachments"]] == ["inv.html"]

    both = graph.post(f"{url}/forward", json={"comment": "x", "message": {"body": {"contentType": "text", "content": "y"}},
                                              "toRecipients": [{"emailAddress": {"address": "secops@contoso.com"}}]})
    assert both.status_code == 400
    twice = graph.post(f"{url}/forward", json={"toRecipients": [{"emailAddress": {"address": "a@b.example"}}],
                                               "message": {"toRecipients": [{"emailAddress": {"address": "a@b.example"}}]}})
    assert twice.status_code == 400

    assert graph.post(f"{url}/reply", json={"comment": "Thanks"}).status_code == 202
    (reply,) = graph.get("/users/carol@contoso.com/messages").json()["value"]
    assert reply["subject"] == "RE: Invoice"
    assert graph.post(f"{url}/replyAll", json={"comment": "All"}).status_code == 202
    assert len(graph.get("/users/carol@contoso.com/messages").json()["value"]) == 2
    assert "dave@contoso.com" in [m["to"] for m in emulator.outbound_mail]
    sent = graph.get(f"/users/{ALICE}/mailFolders/sentitems/messages").json()["value"]
    assert sorted(m["subject"] for m in sent) == ["FW: Invoice", "RE: Invoice", "RE: Invoice"]


def test_write_actions_need_write_permissions(emulator, graph):
    emulator.add_user(ALICE)
    message = emulator.deliver(ALICE, {"subject": "x"})
    emulator.app_registration.roles = ("Mail.Read",)
    readonly = type(graph)(emulator)
    assert readonly.get(f"/users/{ALICE}/messages/{message['id']}").status_code == 200
    assert readonly.delete(f"/users/{ALICE}/messages/{message['id']}").status_code == 403
    assert readonly.post(f"/users/{ALICE}/sendMail", json={"message": {}}).status_code == 403


def test_attachments_by_kind_and_their_values(emulator, graph):
    emulator.add_user(ALICE)
    big = bytes(range(256)) * 4096  # 1 MiB, streamed by /$value
    message = emulator.deliver(ALICE, {"subject": "kinds", "attachments": [
        {"name": "big.bin", "content": big},
        {"kind": "item", "name": "inner", "item": {"subject": "nested", "body": "inside", "attachments": [
            {"name": "note.txt", "content": b"inner bytes"},
            {"kind": "item", "name": "deeper", "item": {"subject": "deeper"}}]}},
        {"kind": "reference", "name": "link.docx", "sourceUrl": "https://contoso.sharepoint.com/link.docx"}]})
    url = f"/users/{ALICE}/messages/{message['id']}/attachments"
    listed = {a["name"]: a for a in graph.get(url).json()["value"]}
    assert "item" not in listed["inner"] and listed["inner"]["contentType"] is None
    assert graph.get(f"{url}/{listed['big.bin']['id']}/$value").content == big
    expanded = graph.get(f"{url}/{listed['inner']['id']}?$expand=microsoft.graph.itemattachment/item").json()
    assert expanded["item"]["subject"] == "nested"
    # "including any nested attachments up to 30 levels" (attachment-get): files with their bytes, items expanded
    note, deeper = expanded["item"]["attachments"]
    assert base64.b64decode(note["contentBytes"]) == b"inner bytes" and deeper["item"]["subject"] == "deeper"
    assert b"Subject: nested" in graph.get(f"{url}/{listed['inner']['id']}/$value").content
    assert graph.get(f"{url}/{listed['link.docx']['id']}/$value").status_code == 405
    assert graph.get(f"{url}/nope").status_code == 404
    assert b"Subject: kinds" in graph.get(f"/users/{ALICE}/messages/{message['id']}/$value").content
