"""``format: insightconnect`` is, field for field, the InsightConnect Office 365 Email plugin's (v4.0.1) trigger
output: ``{"icon_email": …}`` of its ``icon_email`` type, attached emails nested as ``attachment_email``,
``attachment_email_nested`` and ``attachment_email_nested_two``."""

from __future__ import annotations

import json

from workers.triggers.insightconnect import insightconnect_event

# The field lists of the plugin.spec.yaml types (rapid7/insightconnect-plugins, microsoft_office365_email 4.0.1).
ATTACHMENT_EMAIL = {"id": str, "sender": str, "subject": str, "body": str, "categories": list, "headers": list,
                    "attached_files": list, "attached_emails": list, "account": str, "recipients": list,
                    "has_attachments": bool}
ICON_EMAIL = {**ATTACHMENT_EMAIL, "is_read": bool, "flattened_attached_emails": list,
              "flattened_attached_files": list}
ATTACHMENT_FILE = {"file_name": str, "content": str, "content_type": str}
HEADER = {"name": str, "value": str}


def nest(depth: int) -> dict:
    """An email record with an attached email ``depth`` levels deep, each with one file."""
    email = {"subject": f"level {depth}", "from": {"address": f"l{depth}@x.example"}, "to": [{"address": "a@b.c"}],
             "headers": [{"name": "Received", "value": "mx"}], "bodyText": f"body {depth}", "attachments": [
                 {"kind": "file", "name": f"f{depth}.txt", "contentType": "text/plain", "contentBytes": "eA=="}]}
    if depth:
        email["attachments"].append({"kind": "item", "name": "fwd", "email": nest(depth - 1)})
    return email


def check(value: dict, fields: dict) -> None:
    assert set(value) == set(fields), sorted(set(value) ^ set(fields))
    for name, kind in fields.items():
        assert isinstance(value[name], kind), (name, value[name])
    for f in value["attached_files"] + value.get("flattened_attached_files", []):
        assert set(f) == set(ATTACHMENT_FILE) and all(isinstance(f[k], str) for k in ATTACHMENT_FILE)
    for h in value["headers"]:
        assert set(h) == set(HEADER)


def test_the_body_is_icon_email_with_the_types_nesting():
    record = {"schema": "graphhook.email/1", "mailbox": "alice@contoso.com", "id": "AAMk-1", "isRead": True,
              "categories": ["Phishing"], "receivedDateTime": "2026-11-27T10:00:00Z",
              **{k: v for k, v in nest(4).items()}}
    body = insightconnect_event(record)
    assert list(body) == ["icon_email"]
    top = body["icon_email"]
    check(top, ICON_EMAIL)
    assert top["id"] == "AAMk-1" and top["is_read"] is True and top["categories"] == ["Phishing"]
    level, depth = top, 0
    while level["attached_emails"]:
        [level] = level["attached_emails"]
        depth += 1
        check(level, ATTACHMENT_EMAIL)  # attachment_email, …_nested, …_nested_two, then []object of the same
        assert level["id"] == "" and level["account"] == "alice@contoso.com" and level["has_attachments"] is True
    assert depth == 4 and level["subject"] == "level 0" and level["has_attachments"] is True
    assert [e["subject"] for e in top["flattened_attached_emails"]] == [f"level {i}" for i in range(4)]
    for e in top["flattened_attached_emails"]:
        check(e, ATTACHMENT_EMAIL)
    assert [f["file_name"] for f in top["flattened_attached_files"]] == [f"f{i}.txt" for i in range(5)]
    assert "date_received" not in json.dumps(body)  # not a field of the type


def test_reference_attachments_are_left_out_as_the_plugin_does():
    record = {"mailbox": "m@x.example", "id": "1", "subject": "s",
              "attachments": [{"kind": "reference", "name": "Contract.docx", "sourceUrl": "https://x/y"}]}
    top = insightconnect_event(record)["icon_email"]
    assert top["attached_files"] == [] and top["attached_emails"] == [] and top["has_attachments"] is False
