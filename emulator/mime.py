"""Render a stored Graph message as RFC 5322 MIME, as ``GET …/messages/{id}/$value`` returns it."""

from __future__ import annotations

import base64
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP, default
from email.utils import format_datetime, formataddr
from typing import Any

from .query import parse_time


def _addr(recipient: dict[str, Any]) -> str:
    email = recipient["emailAddress"]
    return formataddr((email.get("name") or "", email["address"]))


def message_to_mime(message: dict[str, Any]) -> bytes:
    """Build MIME bytes from a Graph message and its attachments (item attachments nested)."""
    mime = EmailMessage()
    skip = {"from", "to", "cc", "subject", "date", "message-id", "content-type", "mime-version", "content-transfer-encoding"}
    for header in message.get("internetMessageHeaders", []):
        if header["name"].lower() not in skip:
            mime[header["name"]] = header["value"]
    mime["From"] = _addr(message["from"])
    if message.get("toRecipients"):
        mime["To"] = ", ".join(_addr(r) for r in message["toRecipients"])
    if message.get("ccRecipients"):
        mime["Cc"] = ", ".join(_addr(r) for r in message["ccRecipients"])
    mime["Subject"] = message.get("subject", "")
    mime["Date"] = format_datetime(parse_time(message["sentDateTime"]))
    mime["Message-ID"] = message["internetMessageId"]
    body = message.get("body", {"contentType": "text", "content": ""})
    mime.set_content(body["content"], subtype="html" if body["contentType"] == "html" else "plain")
    for attachment in message.get("attachments", []):
        kind = attachment["@odata.type"]
        if kind == "#microsoft.graph.fileAttachment":
            maintype, _, subtype = (attachment.get("contentType") or "application/octet-stream").partition("/")
            mime.add_attachment(
                base64.b64decode(attachment["contentBytes"]), maintype=maintype, subtype=subtype or "octet-stream",
                filename=attachment["name"],
            )
        elif kind == "#microsoft.graph.itemAttachment":
            inner = message_from_bytes(message_to_mime(attachment["item"]), policy=default)
            mime.add_attachment(inner)
    return mime.as_bytes(policy=SMTP)
