"""The URL spellings Microsoft's pages use, and Graph's JSON error shape for every failure (emulator/routing.py)."""

from __future__ import annotations

import base64
import re
from urllib.parse import quote

from tests.conformance import examples

# The error body of a failed batch part, as concepts/json-batching.md (028b8e3) shows it.
ERROR_SHAPE = examples.load("json-batching")["response"]["body"]["responses"][2]["body"]


def test_documented_spellings_reach_the_same_message(graph, mailbox, emulator):
    user, message = mailbox["user"], mailbox["message"]
    ref = mailbox["reference_attachment"]
    canonical = graph.get(f"/users/{user}/messages/{message}").json()
    for path in (
        f"/users/{user}/messages/{message}/?$select=subject",  # api/message-get.md example 2
        f"/users/{user}/mailfolders/inbox/messages/{message}",  # lower case, api/message-delta.md
        f"/Users('{user}')/Messages('{quote(message, safe='')}')",  # resource strings of notifications
        f"/Users/{user}@{emulator.tenant_id}/Messages/{message}",  # users/{user_guid}@{tenant_guid}/messages/{id}
    ):
        response = graph.get(path)
        assert response.status_code == 200, (path, response.text[:200])
        assert response.json()["id"] == canonical["id"] and response.json()["subject"] == canonical["subject"]
    attachment = graph.get(f"/Users('{user}')/Messages('{message}')/Attachments('{ref}')")
    assert attachment.status_code == 200 and attachment.json()["name"] == "Sales Invoice Template.docx"


def test_another_tenants_user_key_is_not_this_tenants_user(graph, mailbox):
    other = "84bd8158-6d4d-4958-8b9f-9d6445542f95"
    response = graph.get(f"/users/{mailbox['user']}@{other}/messages/{mailbox['message']}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "ErrorInvalidUser"


def test_unknown_routes_and_methods_answer_graphs_json_error(graph, mailbox):
    for method, path, status in (("GET", f"/users/{mailbox['user']}/notAThing", 404), ("GET", "/nothing/here", 404),
                                 ("PUT", f"/users/{mailbox['user']}/messages/{mailbox['message']}", 405)):
        response = graph.request(method, path)
        assert response.status_code == status and response.headers["Content-Type"].startswith("application/json")
        assert not examples.mismatches(ERROR_SHAPE, response.json()), response.text
        assert "<html" not in response.text.lower()


def test_failed_batch_parts_are_json_error_objects_like_the_documented_ones(graph, mailbox):
    user, message = mailbox["user"], mailbox["message"]
    reply = graph.post("/$batch", json={"requests": [
        {"id": "1", "method": "GET", "url": f"/users/{user}/messages/{message}?$select=subject"},
        {"id": "2", "method": "GET", "url": f"/users/{user}/messages/AAMkNotThere="},
        {"id": "3", "method": "GET", "url": f"/users/{user}/notAThing"},
        {"id": "4", "method": "PUT", "url": f"/users/{user}/messages/{message}", "body": {},
         "headers": {"Content-Type": "application/json"}},
    ]})
    assert reply.status_code == 200
    parts = {p["id"]: p for p in reply.json()["responses"]}
    assert parts["1"]["status"] == 200 and parts["1"]["body"]["subject"] == "9/9/2018: concert"
    for pid, status in (("2", 404), ("3", 404), ("4", 405)):
        assert parts[pid]["status"] == status
        assert isinstance(parts[pid]["body"], dict), f"part {pid} is {parts[pid]['body']!r:.80}"
        assert not examples.mismatches(ERROR_SHAPE, parts[pid]["body"])


def test_list_items_carry_etags_and_messages_a_conversation_index(graph, mailbox):
    listed = graph.get(f"/users/{mailbox['user']}/messages?$select=subject,conversationIndex").json()["value"]
    assert listed and all(re.fullmatch(r'W/"[^"]+"', m["@odata.etag"]) for m in listed)
    index = base64.b64decode(listed[0]["conversationIndex"])
    assert len(index) == 22 and index[0] == 1  # a thread's root header block (MS-OXOMSG), as the docs show it
    moved = graph.post(f"/users/{mailbox['user']}/messages/{mailbox['message']}/move",
                       json={"destinationId": "deleteditems"}).json()
    assert moved["@odata.type"] == "#microsoft.graph.message" and moved["@odata.etag"].startswith('W/"')
