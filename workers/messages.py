"""Fetching a message from Graph and turning it into graphhook's email record.

One request gets the message with the properties we use and its attachments
(``$select`` + ``$expand=attachments``).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from .graph import GraphClient

SCHEMA = "graphhook.email/1"
SELECT = (
    "id,internetMessageId,conversationId,subject,from,sender,replyTo,toRecipients,ccRecipients,"
    "bccRecipients,sentDateTime,receivedDateTime,body,bodyPreview,internetMessageHeaders,categories,"
    "isRead,importance,webLink,parentFolderId,hasAttachments"
)


def _address(recipient: dict[str, Any] | None) -> dict[str, str] | None:
    if not recipient:
        return None
    email = recipient.get("emailAddress") or {}
    return {"name": email.get("name") or "", "address": (email.get("address") or "").lower()}


def _addresses(recipients: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    return [a for a in (_address(r) for r in recipients or []) if a]


def attachment_record(attachment: dict[str, Any]) -> dict[str, Any]:
    """Name, type, size and SHA-256 of an attachment (bytes are not kept in the record)."""
    kind = attachment.get("@odata.type", "").rsplit(".", 1)[-1].replace("Attachment", "")
    record: dict[str, Any] = {
        "id": attachment.get("id"),
        "kind": kind,
        "name": attachment.get("name"),
        "contentType": attachment.get("contentType"),
        "size": attachment.get("size"),
        "isInline": bool(attachment.get("isInline")),
    }
    if kind == "file" and attachment.get("contentBytes") is not None:
        data = base64.b64decode(attachment["contentBytes"])
        record["size"] = len(data)
        record["sha256"] = hashlib.sha256(data).hexdigest()
    if kind == "reference":
        record["sourceUrl"] = attachment.get("sourceUrl")
    return record


def email_record(message: dict[str, Any], *, mailbox: str) -> dict[str, Any]:
    """The versioned email record built from a Graph message resource."""
    body = message.get("body") or {}
    html = body.get("content") if body.get("contentType") == "html" else None
    text = body.get("content") if body.get("contentType") == "text" else None
    return {
        "schema": SCHEMA,
        "mailbox": mailbox,
        "folderId": message.get("parentFolderId"),
        "id": message.get("id"),
        "internetMessageId": message.get("internetMessageId"),
        "conversationId": message.get("conversationId"),
        "subject": message.get("subject") or "",
        "from": _address(message.get("from")),
        "sender": _address(message.get("sender")),
        "replyTo": _addresses(message.get("replyTo")),
        "to": _addresses(message.get("toRecipients")),
        "cc": _addresses(message.get("ccRecipients")),
        "bcc": _addresses(message.get("bccRecipients")),
        "sentDateTime": message.get("sentDateTime"),
        "receivedDateTime": message.get("receivedDateTime"),
        "bodyText": text,
        "bodyHtml": html,
        "preview": message.get("bodyPreview") or "",
        "headers": [{"name": h.get("name"), "value": h.get("value")} for h in message.get("internetMessageHeaders") or []],
        "attachments": [attachment_record(a) for a in message.get("attachments") or []],
        "categories": list(message.get("categories") or []),
        "isRead": bool(message.get("isRead")),
        "importance": message.get("importance"),
        "webLink": message.get("webLink"),
    }


def fetch_message(client: GraphClient, user_id: str, message_id: str) -> dict[str, Any]:
    """GET the message with its attachments in one request."""
    return client.get(
        f"users/{user_id}/messages/{message_id}",
        params={"$select": SELECT, "$expand": "attachments"},
    )
