"""What Microsoft's SDKs send and expect, over plain HTTP: ``delta()``, PascalCase action parameters,
typed expanded items, select-only properties and Graph's 400 for an unknown ``$select`` (issue 22).

The same behaviour is driven through msgraph-sdk itself in ``tests/sdk/``; these run without the extra.
"""

from __future__ import annotations

import pytest

ALICE, BOB = "alice@contoso.com", "bob@contoso.com"


@pytest.fixture
def alice(emulator):
    emulator.add_user(ALICE)
    emulator.add_user(BOB)
    return emulator.deliver(ALICE, {"subject": "Invoice", "from": "carol@fabrikam.com", "body": "Please pay.",
                                    "headers": {"Authentication-Results": "spf=pass"}})


def test_delta_function_call_form_is_the_folder_delta(graph, alice):
    first = graph.get(f"/users/{ALICE}/mailFolders/inbox/messages/delta()")
    assert first.status_code == 200, first.text
    assert [m["subject"] for m in first.json()["value"]] == ["Invoice"]
    link = first.json()["@odata.deltaLink"]
    assert "/messages/delta?$deltatoken=" in link  # Graph's links name the function without parentheses
    graph.emu.deliver(ALICE, {"subject": "Second"})
    assert [m["subject"] for m in graph.get(link).json()["value"]] == ["Second"]


@pytest.mark.parametrize("path", ["messages/delta()", "messages/delta"])
def test_mailbox_wide_message_delta_is_refused_as_graph_does(graph, alice, path):
    response = graph.get(f"/users/{ALICE}/{path}")
    assert response.status_code == 400
    assert "Change tracking is not supported against 'microsoft.graph.message'" in response.json()["error"]["message"]


@pytest.mark.parametrize("action", ["move", "copy"])
def test_move_and_copy_accept_the_pascal_case_parameter(graph, alice, action):
    moved = graph.post(f"/users/{ALICE}/messages/{alice['id']}/{action}", json={"DestinationId": "archive"})
    assert moved.status_code == 201, moved.text
    archive = graph.get(f"/users/{ALICE}/mailFolders/archive").json()["id"]
    assert moved.json()["parentFolderId"] == archive


def test_forward_with_pascal_case_parameters_sends_the_comment(graph, alice):
    response = graph.post(f"/users/{ALICE}/messages/{alice['id']}/forward", json={
        "Comment": "Looks like phishing", "ToRecipients": [{"emailAddress": {"address": "soc@example.net"}}]})
    assert response.status_code == 202, response.text
    (sent,) = graph.emu.outbound_mail
    assert sent["to"] == "soc@example.net" and sent["subject"] == "FW: Invoice"
    assert sent["message"]["body"]["content"].startswith("Looks like phishing")


def test_reply_never_drops_a_pascal_case_comment(graph, alice):
    response = graph.post(f"/users/{ALICE}/messages/{alice['id']}/reply", json={"Comment": "We do not pay by link."})
    assert response.status_code == 202, response.text
    (sent,) = graph.emu.outbound_mail
    assert sent["to"] == "carol@fabrikam.com"
    assert sent["message"]["body"]["content"].startswith("We do not pay by link.")


def test_send_mail_with_pascal_case_parameters(graph, alice):
    response = graph.post(f"/users/{ALICE}/sendMail", json={"SaveToSentItems": False, "Message": {
        "subject": "Hello Bob", "body": {"contentType": "text", "content": "hi"},
        "toRecipients": [{"emailAddress": {"address": BOB}}]}})
    assert response.status_code == 202, response.text
    assert [m["subject"] for m in graph.get(f"/users/{BOB}/messages").json()["value"]] == ["Hello Bob"]
    assert graph.get(f"/users/{ALICE}/mailFolders/sentitems/messages").json()["value"] == []


def test_expanded_item_attachment_is_typed_as_a_message(emulator, graph):
    emulator.add_user(ALICE)
    report = emulator.deliver(ALICE, {"subject": "Reported", "attachments": [{
        "kind": "item", "name": "phish", "item": {"subject": "Reset your password", "from": "x@evil.example",
                                                  "headers": {"Authentication-Results": "spf=fail"}}}]})
    attachment = report["attachments"][0]["id"]
    expanded = graph.get(f"/users/{ALICE}/messages/{report['id']}/attachments/{attachment}"
                         "?$expand=microsoft.graph.itemattachment/item").json()
    assert expanded["item"]["@odata.type"] == "#microsoft.graph.message"
    assert expanded["item"]["subject"] == "Reset your password"
    # The documented example shows the attached message's headers in the expansion.
    assert expanded["item"]["internetMessageHeaders"] == [{"name": "Authentication-Results", "value": "spf=fail"}]


def test_headers_and_unique_body_only_when_selected(graph, alice):
    path = f"/users/{ALICE}/messages/{alice['id']}"
    plain = graph.get(path).json()
    assert "internetMessageHeaders" not in plain and "uniqueBody" not in plain and plain["body"]["content"] == "Please pay."
    listed = graph.get(f"/users/{ALICE}/messages").json()["value"][0]
    assert "internetMessageHeaders" not in listed
    (delta_item,) = graph.get(f"/users/{ALICE}/mailFolders/inbox/messages/delta").json()["value"]
    assert "internetMessageHeaders" not in delta_item

    chosen = graph.get(path, params={"$select": "subject,internetMessageHeaders,uniqueBody"}).json()
    assert chosen["internetMessageHeaders"] == [{"name": "Authentication-Results", "value": "spf=pass"}]
    assert chosen["uniqueBody"] == {"contentType": "text", "content": "Please pay."}
    assert "body" not in chosen


@pytest.mark.parametrize("path", ["messages", "messages/{id}", "mailFolders/inbox/messages",
                                  "mailFolders/inbox/messages/delta"])
def test_selecting_an_unknown_message_property_is_graphs_400(graph, alice, path):
    response = graph.get(f"/users/{ALICE}/" + path.format(id=alice["id"]), params={"$select": "subject,notAProperty"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "RequestBroker--ParseUri"
    assert error["message"] == "Could not find a property named 'notAProperty' on type 'microsoft.graph.message'."


def test_selecting_is_case_insensitive_and_knows_relationships(graph, alice):
    response = graph.get(f"/users/{ALICE}/messages/{alice['id']}", params={"$select": "Subject,conversationIndex,extensions"})
    assert response.status_code == 200 and response.json()["subject"] == "Invoice"


@pytest.mark.parametrize("path", ["users", f"users/{ALICE}"])
def test_selecting_an_unknown_user_property_is_graphs_400(graph, alice, path):
    response = graph.get(f"/{path}", params={"$select": "mail,mailAddress"})
    assert response.status_code == 400
    assert "Could not find a property named 'mailAddress' on type 'microsoft.graph.user'" in response.json()["error"]["message"]


def test_a_documented_user_property_the_emulator_does_not_hold_is_null(graph, alice):
    user = graph.get(f"/users/{ALICE}", params={"$select": "mail,department,accountEnabled"}).json()
    assert user["mail"] == ALICE and user["department"] is None and user["accountEnabled"] is None
    assert "displayName" not in user
