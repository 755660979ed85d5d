"""The ``format: insightconnect`` webhook body: what the InsightConnect "Microsoft Office 365 Email" plugin's
``email_received`` trigger outputs, so workflows built on that plugin switch to graphhook unchanged.

The plugin (rapid7/insightconnect-plugins ``microsoft_office365_email``, v4.0.1 ``plugin.spec.yaml``)
sends one output named ``icon_email`` of its type ``icon_email``; the body here is
``{"icon_email": {…}}`` with exactly the fields of that type, and attached emails follow the
type's nesting, field for field:

- ``icon_email``: id, account, is_read, sender, subject, body, attached_files, attached_emails
  (``[]attachment_email``), flattened_attached_emails (``[]attachment_email``),
  flattened_attached_files, categories, headers, recipients, has_attachments;
- ``attachment_email`` → ``attachment_email_nested`` → ``attachment_email_nested_two`` (whose
  ``attached_emails`` are ``[]object``, filled with the same shape): id, sender, subject, body,
  categories, headers, attached_files, attached_emails, account, recipients, has_attachments — no
  is_read and no flattened lists, as the type says;
- ``attachment_file``: file_name, content (base64; empty unless the webhook sets
  ``include_content`` and the size cap allows), content_type; ``header``: name, value.

As in the plugin: the body is Graph's (HTML when the message has HTML), recipients are the To
addresses, attached emails have an empty id (Graph gives item attachments no message id) and the
mailbox as account, reference attachments are left out, and the flattened lists hold every
attached email and file of the tree (de-duplicated, sorted by subject and by file name, as the
plugin's ``flatten`` leaves them). ``date_received`` is not a field of the type and is not sent.
"""

from __future__ import annotations

import json
from typing import Any, Mapping


def _files(record: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"file_name": str(a.get("name") or ""), "content": str(a.get("contentBytes") or ""),
             "content_type": str(a.get("contentType") or "")}
            for a in record.get("attachments") or [] if a.get("kind") == "file"]


def _inner(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [a["email"] for a in record.get("attachments") or [] if isinstance(a.get("email"), Mapping)]


def _common(record: Mapping[str, Any], *, account: str, message_id: str) -> dict[str, Any]:
    """The fields every email type of the plugin has."""
    body = record.get("bodyHtml") if record.get("bodyHtml") else record.get("bodyText")
    sender = record.get("from") or record.get("sender") or {}
    files, emails = _files(record), _inner(record)
    return {
        "id": message_id,
        "account": account,
        "sender": str(sender.get("address") or ""),
        "subject": str(record.get("subject") or ""),
        "body": str(body or record.get("preview") or ""),
        "categories": [str(c) for c in record.get("categories") or []],
        "headers": [{"name": str(h.get("name") or ""), "value": str(h.get("value") or "")}
                    for h in record.get("headers") or []],
        "recipients": [str(r.get("address") or "") for r in record.get("to") or []],
        "attached_files": files,
        "has_attachments": bool(files or emails),
    }


def attachment_email(record: Mapping[str, Any], *, account: str) -> dict[str, Any]:
    """An attached email as the plugin's ``attachment_email`` (and, one level down each, ``…_nested``,
    ``…_nested_two``: the same fields)."""
    out = _common(record, account=account, message_id="")
    out["attached_emails"] = [attachment_email(inner, account=account) for inner in _inner(record)]
    return out


def _flatten(record: Mapping[str, Any], account: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every attached email (depth first, children before parents) and every file of the tree."""
    emails: list[dict[str, Any]] = []
    files = list(_files(record))
    for inner in _inner(record):
        deeper, deeper_files = _flatten(inner, account)
        emails += deeper + [attachment_email(inner, account=account)]
        files += deeper_files
    return emails, files


def _unique(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for item in items:
        seen.setdefault(json.dumps(item, sort_keys=True), item)
    return sorted(seen.values(), key=lambda item: str(item.get(key) or ""))


def icon_email(record: Mapping[str, Any], *, account: str, message_id: str) -> dict[str, Any]:
    """One email record as the plugin's ``icon_email`` type."""
    out = _common(record, account=account, message_id=message_id)
    out["is_read"] = bool(record.get("isRead"))
    out["attached_emails"] = [attachment_email(inner, account=account) for inner in _inner(record)]
    emails, files = _flatten(record, account)
    out["flattened_attached_emails"] = _unique(emails, "subject")
    out["flattened_attached_files"] = _unique(files, "file_name")
    return out


def insightconnect_event(email: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook body for ``format: insightconnect``: ``{"icon_email": {…}}``, as the plugin's trigger sends."""
    return {"icon_email": icon_email(email, account=str(email.get("mailbox") or ""),
                                     message_id=str(email.get("id") or ""))}
