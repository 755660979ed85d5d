"""Drafts: creating one, adding attachments by POST, and sending it.

- ``POST /users/{id}/messages`` (and ``…/mailFolders/{id}/messages``) creates a draft
  (https://learn.microsoft.com/graph/api/user-post-messages): 201 with the message,
  ``isDraft`` and ``isRead`` true, ``from``/``sender`` the mailbox owner, in Drafts
  unless a folder is named. Subscriptions on that folder (or on all the mailbox's
  mail) hear ``created``; Inbox subscriptions do not. Properties the server owns
  (``isDraft``, ``id``, …) are 400 ``ErrorInvalidPropertySet``; unknown ones 400 ``RequestBodyRead``.
- ``POST …/messages/{id}/attachments`` adds one attachment (``@odata.type`` file, item or
  reference attachment; the leading ``#`` is optional), 201 with it as
  ``GET …/attachments/{id}`` shows it, ``contentBytes`` included
  (https://learn.microsoft.com/graph/api/message-post-attachments). The message gets a new
  ``changeKey`` and ``hasAttachments``; its subscribers hear ``updated``. A file attachment
  may hold at most **3 MiB** (3,145,728 bytes) once decoded, alone or inside a draft's
  ``attachments``; more is **413** ``ErrorRequestEntityTooLarge`` saying to use an upload
  session (:mod:`emulator.uploads`). The docs give the 3 MB limit and, for oversized
  payloads, a 413; the code is inferred.
- ``POST …/messages/{id}/send`` sends a draft (https://learn.microsoft.com/graph/api/message-send):
  202; the draft leaves its folder (``deleted`` there) and the sent copy, with the
  draft's immutable id, lands in Sent Items; delivery is ``actions.send``'s. No recipients,
  or one without an address, is 400 ``ErrorInvalidRecipients`` as for ``sendMail``; a
  message that is not a draft is 400 ``ErrorInvalidOperation`` (inferred).

Attachments may be added to any message of the mailbox, not only drafts; the docs
name no such restriction.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from flask import Blueprint, jsonify, request

from . import odata
from .actions import recipients_error, send
from .graphapi import (
    attachment_view,
    emulator,
    find_user,
    graph_error,
    invalid_user,
    not_found_item,
    render_message,
    require_roles,
)
from .mailstore import MESSAGE_PROPERTIES, NotFound, User, build_message, make_attachment
from .messages import _check_value, item_routes, load

bp = Blueprint("drafts", __name__, url_prefix="/v1.0/users/<user_ref>")

MiB = 1024 * 1024
MAX_POST_ATTACHMENT = 3 * MiB  # "This operation limits the size of the attachment you can add to under 3 MB."
FILE = "#microsoft.graph.fileAttachment"
ATTACHMENT_TYPES = (FILE, "#microsoft.graph.itemAttachment", "#microsoft.graph.referenceAttachment")
RECIPIENT_LISTS = ("toRecipients", "ccRecipients", "bccRecipients")
# What a new draft may set; the rest of the message resource is the server's.
DRAFT_PROPERTIES = {"subject", "body", "toRecipients", "ccRecipients", "bccRecipients", "replyTo", "from", "sender",
                    "importance", "categories", "internetMessageHeaders", "internetMessageId", "attachments",
                    "isDeliveryReceiptRequested", "isReadReceiptRequested", "flag", "inferenceClassification"}


# --- helpers -----------------------------------------------------------------------------------------
def _json_body() -> dict[str, Any] | None:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else None


def _too_large(size: int):
    return graph_error(413, "ErrorRequestEntityTooLarge",
                       f"The attachment is {size} bytes; a single POST takes at most {MAX_POST_ATTACHMENT} bytes "
                       "(3 MB). Use an upload session (attachments/createUploadSession) for files from 3 MB to 150 MB.")


def _typed(spec: Any) -> Any:
    """An attachment payload with its ``@odata.type`` in the ``#microsoft.graph.…`` form (the ``#`` is optional)."""
    kind = spec.get("@odata.type") if isinstance(spec, dict) else None
    if isinstance(kind, str) and kind and not kind.startswith("#"):
        return {**spec, "@odata.type": "#" + kind}
    return spec


def _check_attachment(spec: Any):
    """None if ``spec`` is an attachment this emulator can add, else an error response."""
    if not isinstance(spec, dict):
        return graph_error(400, "ErrorInvalidArgument", "An attachment must be a JSON object.")
    kind = spec.get("@odata.type")
    if kind not in ATTACHMENT_TYPES:
        return graph_error(400, "ErrorInvalidArgument",
                           f"The @odata.type of an attachment must be one of {', '.join(ATTACHMENT_TYPES)}; got {kind!r}.")
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        return graph_error(400, "ErrorInvalidArgument", "The attachment's name is required.")
    if kind == FILE:
        content = spec.get("contentBytes")
        if not isinstance(content, str):
            return graph_error(400, "ErrorInvalidArgument", "The contentBytes of a file attachment is required.")
        try:
            size = len(base64.b64decode("".join(content.split()), validate=True))
        except (binascii.Error, ValueError):
            return graph_error(400, "ErrorInvalidArgument", "The contentBytes of the file attachment is not valid base64.")
        if size > MAX_POST_ATTACHMENT:
            return _too_large(size)
    elif kind == "#microsoft.graph.itemAttachment" and not isinstance(spec.get("item"), dict):
        return graph_error(400, "ErrorInvalidArgument", "The item of an item attachment is required.")
    return None


def _check_recipient_shapes(body: dict[str, Any]):
    """Drafts may hold any address (sending judges them), but each entry needs an emailAddress.address."""
    for key in (*RECIPIENT_LISTS, "replyTo"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(
                isinstance(r, dict) and isinstance(r.get("emailAddress"), dict)
                and isinstance(r["emailAddress"].get("address"), str) for r in value):
            return graph_error(400, "ErrorInvalidRecipients", f"The {key} property must be a list of recipients.")
    return None


def _attach(message: dict[str, Any], attachment: dict[str, Any]) -> None:
    """Add an attachment (under the store lock): hasAttachments, and a change for subscribers and delta."""
    message["attachments"].append(attachment)
    message["hasAttachments"] = any(not a["isInline"] for a in message["attachments"])
    emulator().mail.touch(message)


# --- drafts ------------------------------------------------------------------------------------------
@bp.post("/messages", defaults={"folder_ref": None})
@bp.post("/mailFolders/<folder_ref>/messages")
@require_roles("Mail.ReadWrite")
def create_draft(user_ref: str, folder_ref: str | None):
    body = _json_body()
    if body is None:
        return graph_error(400, "BadRequest", "Empty Payload. JSON content expected.")
    for key in body:
        if key.startswith("@"):
            continue
        if key not in MESSAGE_PROPERTIES:
            return graph_error(400, "RequestBodyRead", f"The property '{key}' does not exist on type 'microsoft.graph.message'. Make sure to only use property names that are defined by the type or mark the type as open type.")
        if key not in DRAFT_PROPERTIES:
            return graph_error(400, "ErrorInvalidPropertySet", f"The property '{key}' cannot be set on a new message.")
        problem = _check_value(key, str(body[key]).lower() if key == "importance" else body[key])
        if problem:
            return graph_error(400, "ErrorInvalidArgument", problem)
    problem = _check_recipient_shapes(body)
    attachments = body.get("attachments") or []
    if problem is None and not isinstance(attachments, list):
        problem = graph_error(400, "ErrorInvalidArgument", "The attachments property must be a list.")
    if problem is None:
        body = {**body, "attachments": [_typed(a) for a in attachments]}
        problem = next(filter(None, (_check_attachment(a) for a in body["attachments"])), None)
    if problem:
        return problem
    emu = emulator()
    with emu.mail.lock:
        try:
            user = find_user(user_ref)
        except NotFound:
            return invalid_user(user_ref)
        try:
            folder = user.folder(folder_ref or "drafts")
        except NotFound:
            return not_found_item()
        message = _draft(user, body)
        emu.mail.insert(user, folder, message)
        out = odata.message_entity(render_message(message), message, user.id)
    emu.record("message.drafted", mailbox=user.mail, id=message["id"], subject=message["subject"])
    emu.notify_change(user.id, folder.id, message, "created")
    return jsonify(out), 201


def _draft(user: User, body: dict[str, Any]) -> dict[str, Any]:
    """A draft message resource from a Graph message payload."""
    now = emulator().clock.now()
    owner = {"address": user.mail, "name": user.display_name}
    spec = {k: v for k, v in body.items() if not k.startswith("@")}
    spec.update({"from": body.get("from") or owner, "sender": body.get("sender") or body.get("from") or owner,
                 "isDraft": True, "isRead": True, "importance": str(body.get("importance", "normal")).lower()})
    message = build_message(spec, now)
    for key in ("isDeliveryReceiptRequested", "isReadReceiptRequested", "inferenceClassification"):
        if key in body:
            message[key] = body[key]
    if isinstance(body.get("flag"), dict):
        message["flag"] = {**message["flag"], **body["flag"]}
    return message


# --- attachments -------------------------------------------------------------------------------------
@item_routes(bp, "/attachments", methods=["POST"])
@require_roles("Mail.ReadWrite")
def add_attachment(user_ref: str, folder_ref: str | None, message_id: str):
    body = _typed(_json_body())
    if body is None:
        return graph_error(400, "BadRequest", "Empty Payload. JSON content expected.")
    problem = _check_attachment(body)
    if problem:
        return problem
    emu = emulator()
    with emu.mail.lock:
        user, folder, message, error = load(user_ref, message_id)
        if error:
            return error
        attachment = make_attachment(body, emu.clock.now())
        _attach(message, attachment)
        out = attachment_view(attachment)
    emu.notify_change(user.id, folder.id, message, "updated")
    return jsonify(odata.attachment_entity(out, user.id, message_id)), 201


# --- sending a draft ---------------------------------------------------------------------------------
@item_routes(bp, "/send", methods=["POST"])
@require_roles("Mail.Send")
def send_draft(user_ref: str, folder_ref: str | None, message_id: str):
    emu = emulator()
    with emu.mail.lock:
        user, folder, draft, error = load(user_ref, message_id)
        if error:
            return error
        if not draft["isDraft"]:
            return graph_error(400, "ErrorInvalidOperation", "Only a draft message can be sent.")
        refused = recipients_error(draft)
        if refused is not None:
            return refused
        emu.mail.remove(user, draft)  # before send() indexes the sent copy under the same immutable id
    emu.notify_change(user.id, folder.id, draft, "deleted")
    spec = {k: draft[k] for k in ("subject", "body", *RECIPIENT_LISTS, "replyTo", "attachments", "importance",
                                  "internetMessageHeaders", "internetMessageId", "conversationId")}
    send(user, spec, immutable_id=draft["_immutableId"])
    return "", 202
