"""A mailbox shaped like the documented examples: one message with headers, an HTML body and a file,
an item and a reference attachment, plus two more messages so that delta pages."""

from __future__ import annotations

from typing import Any

import pytest

from tests.emulator.conftest import GraphClient

ALICE = "alice@contoso.com"


@pytest.fixture
def mailbox(emulator) -> dict[str, str]:
    """Fixture values for the examples' sample keys (see ``examples.adapt``)."""
    user = emulator.add_user(ALICE, "Alice Wilber")
    for n in range(2):
        emulator.deliver(ALICE, {"subject": f"older {n}", "from": "bob@fabrikam.com"})
    message = emulator.deliver(ALICE, {
        "subject": "9/9/2018: concert", "from": {"name": "Adele Vance", "address": "adelev@contoso.com"},
        "html": "<html><body>The group represents Nevada.</body></html>",
        "headers": {"MIME-Version": "1.0", "Content-Type": "multipart/report", "x-custom-header-group-name": "Washington"},
        "attachments": [
            {"name": "Draft sales invoice template.docx", "content": b"PK\x03\x04 invoice",
             "contentType": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
            {"kind": "item", "name": "Reminder - please bring laptop",
             "item": {"subject": "Reminder - please bring laptop", "from": "adelev@contoso.com",
                      "to": ["alexw@contoso.com"], "cc": ["adelev@contoso.com"]}},
            {"kind": "reference", "name": "Sales Invoice Template.docx", "isInline": True,
             "sourceUrl": "https://contoso.sharepoint.com/Sales%20Invoice%20Template.docx",
             "contentType": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
        ]})
    by_kind = {a["@odata.type"].rsplit(".", 1)[-1]: a["id"] for a in message["attachments"]}
    return {
        "https://graph.microsoft.com/v1.0/": f"{emulator.graph_url}/",
        "/me/": f"/users/{user.id}/",
        "user": user.id,
        "message": message["id"],
        "file_attachment": by_kind["fileAttachment"],
        "item_attachment": by_kind["itemAttachment"],
        "reference_attachment": by_kind["referenceAttachment"],
        "inbox": user.folder("inbox").id,
    }


@pytest.fixture
def graph(emulator) -> GraphClient:
    return GraphClient(emulator)


def mapping_for(example: dict[str, Any], mailbox: dict[str, str]) -> dict[str, str]:
    """Sample key -> fixture value for one example (URL prefix and ``me`` always)."""
    out = {k: v for k, v in mailbox.items() if k.startswith(("https://", "/me/"))}
    for sample, kind in example.get("adapt", {}).items():
        out[sample] = mailbox[kind]
    return out
