"""The ``format: insightconnect`` webhook body: the fields of the InsightConnect Office365 "email received"
trigger output, so workflows built on that plugin can switch to graphhook unchanged.

Types follow the plugin's ``icon_email``: strings, booleans and lists; attached
files carry base64 ``content`` (empty when the webhook does not include content
or the size cap was reached); attached emails have an empty ``id``, as in the
plugin (Graph gives item attachments no message id).
"""

from __future__ import annotations

from typing import Any, Mapping


def _files(record: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"file_name": str(a.get("name") or ""), "content": str(a.get("contentBytes") or ""),
             "content_type": str(a.get("contentType") or "")}
            for a in record.get("attachments") or [] if a.get("kind") == "file"]


def icon_email(record: Mapping[str, Any], *, account: str, message_id: str) -> dict[str, Any]:
    """One email (or attached email) as the plugin's ``icon_email`` object."""
    body = record.get("bodyHtml") if record.get("bodyHtml") else record.get("bodyText")
    attached = [icon_email(a["email"], account=account, message_id="")
                for a in record.get("attachments") or [] if isinstance(a.get("email"), Mapping)]
    flat_emails: list[dict[str, Any]] = []
    flat_files = list(_files(record))
    for inner in attached:
        flat_emails.append({k: v for k, v in inner.items()})
        flat_emails.extend(inner["flattened_attached_emails"])
        flat_files.extend(inner["flattened_attached_files"])
    sender = record.get("from") or record.get("sender") or {}
    return {
        "account": account,
        "id": message_id,
        "is_read": bool(record.get("isRead")),
        "sender": str(sender.get("address") or ""),
        "recipients": [str(r.get("address") or "") for r in record.get("to") or []],
        "subject": str(record.get("subject") or ""),
        "body": str(body or record.get("preview") or ""),
        "categories": [str(c) for c in record.get("categories") or []],
        "date_received": str(record.get("receivedDateTime") or ""),
        "headers": [{"name": str(h.get("name") or ""), "value": str(h.get("value") or "")} for h in record.get("headers") or []],
        "has_attachments": bool(record.get("attachments")),
        "attached_files": _files(record),
        "attached_emails": attached,
        "flattened_attached_emails": flat_emails,
        "flattened_attached_files": flat_files,
    }


def insightconnect_event(email: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook body for ``format: insightconnect``."""
    return icon_email(email, account=str(email.get("mailbox") or ""), message_id=str(email.get("id") or ""))
