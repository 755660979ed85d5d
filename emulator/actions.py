"""Message actions: move and copy (201), forward, reply, replyAll and sendMail (202).

- ``move`` returns the moved message with a **new id** unless the request
  prefers immutable ids (https://learn.microsoft.com/graph/outlook-immutable-id);
  subscriptions see ``created`` in the destination and ``deleted`` in the source.
- ``forward``/``reply``/``replyAll`` answer 400 when both ``comment`` and
  ``message.body`` are given, or recipients in both places
  (https://learn.microsoft.com/graph/api/message-forward).
- Sending puts a copy in Sent Items (unless ``saveToSentItems`` is false) and
  delivers to every recipient who is a mailbox of this tenant, which fires
  their notifications; mail for other addresses is kept in
  ``Emulator.outbound_mail`` so tests can assert on it.
- Parameter names are matched case-insensitively (``DestinationId``,
  ``Comment``, ``ToRecipients``, ``Message``, ``SaveToSentItems`` as the SDKs
  send them), as Graph does.
"""

from __future__ import annotations

import html
import uuid
from typing import Any

from flask import Blueprint, jsonify

from . import odata
from .graphapi import (
    action_body,
    emulator,
    find_user,
    graph_error,
    invalid_user,
    not_found_item,
    render_message,
    require_roles,
)
from .mailstore import NotFound, User, build_message, isoformat
from .messages import item_routes, load

bp = Blueprint("actions", __name__, url_prefix="/v1.0/users/<user_ref>")

SEND_ROLES = ("Mail.Send",)


def _transfer(user_ref: str, message_id: str, copy: bool):
    body = action_body("destinationId") or {}
    destination = body.get("destinationId")
    if not isinstance(destination, str) or not destination:
        return graph_error(400, "ErrorInvalidArgument", "The destinationId parameter is required.")
    emu = emulator()
    with emu.mail.lock:
        user, source, message, error = load(user_ref, message_id)
        if error:
            return error
        try:
            target = user.folder(destination)
        except NotFound:
            return not_found_item()
        if copy:
            result = emu.mail.copy(user, message, target)
        else:
            _, result = emu.mail.move(user, message, target)
        out = odata.moved_entity(render_message(result), result)
    if not copy:
        emu.notify_change(user.id, source.id, message, "deleted")
    emu.notify_change(user.id, target.id, result, "created")
    return jsonify(out), 201


@item_routes(bp, "/move", methods=["POST"])
@require_roles("Mail.ReadWrite")
def move(user_ref: str, folder_ref: str | None, message_id: str):
    return _transfer(user_ref, message_id, copy=False)


@item_routes(bp, "/copy", methods=["POST"])
@require_roles("Mail.ReadWrite")
def copy_message(user_ref: str, folder_ref: str | None, message_id: str):
    return _transfer(user_ref, message_id, copy=True)


def _recipients(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return []
    if not isinstance(value, list):
        return None
    out = []
    for entry in value:
        address = entry.get("emailAddress", {}).get("address") if isinstance(entry, dict) else None
        if not isinstance(address, str) or "@" not in address:
            return None
        out.append(entry)
    return out


def recipients_error(message: dict[str, Any]):
    """Graph's 400 for a message that cannot be sent to its recipients (none, or one without an address)."""
    lists = [_recipients(message.get(k)) for k in ("toRecipients", "ccRecipients", "bccRecipients")]
    if any(v is None for v in lists):
        return graph_error(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
    if not any(lists):
        return graph_error(400, "ErrorInvalidRecipients", "At least one recipient isn't valid., "
                                                           "A message can't be sent because it contains no recipients.")
    return None


def send(user: User, spec: dict[str, Any], save: bool = True, immutable_id: str | None = None) -> dict[str, Any]:
    """Send ``spec`` (a Graph message) from ``user``: Sent Items copy, local deliveries, outbound record.

    ``immutable_id`` keeps a sent draft's immutable id on its Sent Items copy (the draft moves there).
    """
    emu = emulator()
    now = emu.clock.now()
    spec = {**spec, "from": {"emailAddress": {"name": user.display_name, "address": user.mail}},
            "sentDateTime": isoformat(now), "receivedDateTime": isoformat(now),
            "internetMessageId": spec.get("internetMessageId") or f"<{uuid.uuid4().hex}@{user.mail.split('@')[-1]}>"}
    sent = build_message(spec, now)
    sent["_immutableId"] = immutable_id or sent["_immutableId"]
    recipients = [r["emailAddress"]["address"] for key in ("toRecipients", "ccRecipients", "bccRecipients")
                  for r in sent[key]]
    if save:
        with emu.mail.lock:
            sent["isRead"] = True
            emu.mail.insert(user, user.folder("sentitems"), sent)
        emu.notify_change(user.id, sent["parentFolderId"], sent, "created")
    inbound = {**spec, "bccRecipients": []}  # recipients do not see the Bcc line
    for address in dict.fromkeys(a.lower() for a in recipients):
        try:
            emu.mail.user(address)
        except NotFound:
            emu.outbound_mail.append({"from": user.mail, "to": address, "subject": sent["subject"],
                                      "internetMessageId": sent["internetMessageId"], "message": sent})
            continue
        emu.deliver(address, inbound)
    emu.record("mail.sent", mailbox=user.mail, subject=sent["subject"], recipients=recipients)
    return sent


@bp.post("/sendMail")
@require_roles(*SEND_ROLES)
def send_mail(user_ref: str):
    body = action_body("message", "saveToSentItems")
    if body is None or not isinstance(body.get("message"), dict):
        return graph_error(400, "ErrorInvalidArgument", "The message parameter is required.")
    try:
        user = find_user(user_ref)
    except NotFound:
        return invalid_user(user_ref)
    message = body["message"]
    refused = recipients_error(message)
    if refused is not None:
        return refused
    send(user, message, save=body.get("saveToSentItems", True) is not False)
    return "", 202


def _quote(original: dict[str, Any], comment: str, header: str) -> dict[str, str]:
    """The body of a reply or forward: the comment above the quoted original, in the original's format."""
    body = original["body"]
    sender = original["from"]["emailAddress"]
    intro = (f"From: {sender.get('name')} <{sender['address']}>\nSent: {original['sentDateTime']}\n"
             f"Subject: {original['subject']}")
    if body["contentType"] == "html":
        content = (f"<html><body><div>{html.escape(comment)}</div><hr><div>{header}</div>"
                   f"<div>{html.escape(intro).replace(chr(10), '<br>')}</div>{body['content']}</body></html>")
        return {"contentType": "html", "content": content}
    return {"contentType": "text", "content": f"{comment}\n\n{header}\n{intro}\n\n{body['content']}"}


def _respond(user_ref: str, message_id: str, kind: str):
    body = action_body("comment", "toRecipients", "message")
    if body is None:
        return graph_error(400, "ErrorInvalidArgument", "Empty Payload. JSON content expected.")
    extra = body.get("message") if isinstance(body.get("message"), dict) else {}
    comment = body.get("comment")
    if comment is not None and extra.get("body") is not None:
        return graph_error(400, "ErrorInvalidArgument", "A comment and a message body cannot both be specified.")
    if body.get("toRecipients") is not None and extra.get("toRecipients") is not None:
        return graph_error(400, "ErrorInvalidArgument", "Recipients cannot be specified both in toRecipients and in message.toRecipients.")
    to = _recipients(body.get("toRecipients") or extra.get("toRecipients"))
    cc = _recipients(extra.get("ccRecipients"))
    if to is None or cc is None:
        return graph_error(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
    with emulator().mail.lock:
        user, _, original, error = load(user_ref, message_id)
        if error:
            return error
        if kind == "forward":
            if not to:
                return graph_error(400, "ErrorInvalidRecipients", "At least one recipient isn't valid., A message can't be sent because it contains no recipients.")
            prefix, header = "FW: ", "-----Original Message-----"
            attachments = [dict(a) for a in original["attachments"]]
        else:
            prefix, header, attachments = "RE: ", "-----Original Message-----", []
            if not to:
                to = list(original["replyTo"] or [original["from"]])
                if kind == "replyAll":
                    me = user.mail.lower()
                    others = [r for r in original["toRecipients"] + original["ccRecipients"]
                              if r["emailAddress"]["address"].lower() != me]
                    to += [r for r in others if r not in to]
        subject = original["subject"]
        if not subject.upper().startswith(prefix):
            subject = prefix + subject
        spec = {
            "subject": extra.get("subject", subject), "toRecipients": to, "ccRecipients": cc,
            "body": extra.get("body") or _quote(original, comment or "", header),
            "attachments": attachments + list(extra.get("attachments", [])),
            "conversationId": original["conversationId"],
        }
    send(user, spec)
    return "", 202


@item_routes(bp, "/forward", methods=["POST"])
@require_roles(*SEND_ROLES)
def forward(user_ref: str, folder_ref: str | None, message_id: str):
    return _respond(user_ref, message_id, "forward")


@item_routes(bp, "/reply", methods=["POST"])
@require_roles(*SEND_ROLES)
def reply(user_ref: str, folder_ref: str | None, message_id: str):
    return _respond(user_ref, message_id, "reply")


@item_routes(bp, "/replyAll", methods=["POST"])
@require_roles(*SEND_ROLES)
def reply_all(user_ref: str, folder_ref: str | None, message_id: str):
    return _respond(user_ref, message_id, "replyAll")
