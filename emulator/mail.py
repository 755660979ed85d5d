"""``/v1.0/users/...``: users, messages and attachments as Microsoft Graph serves them."""

from __future__ import annotations

import base64
import copy
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from .graphapi import graph_error, has_full_read, require_roles
from .mailstore import NotFound, select

bp = Blueprint("mail", __name__, url_prefix="/v1.0")

READ_ROLES = ("Mail.Read", "Mail.ReadWrite", "Mail.ReadBasic", "Mail.ReadBasic.All")
# Properties that Mail.ReadBasic does not expose (https://learn.microsoft.com/graph/permissions-reference#mailreadbasic)
BASIC_HIDDEN = {"body", "bodyPreview", "uniqueBody", "attachments", "internetMessageHeaders"}


def _store():
    return current_app.config["EMULATOR"].mail


def _csv(name: str) -> list[str] | None:
    value = request.args.get(name)
    return [v.strip() for v in value.split(",")] if value else None


def _message(user_ref: str, message_id: str):
    try:
        user = _store().user(user_ref)
    except NotFound:
        return None, graph_error(404, "ErrorInvalidUser", f"The requested user '{user_ref}' is invalid.")
    try:
        _, message = user.find_message(message_id)
    except NotFound:
        return None, graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
    return message, None


def render_message(message: dict[str, Any], fields: list[str] | None, expand: list[str] | None) -> dict[str, Any]:
    """Serialize a message honouring $select, $expand=attachments and the caller's permissions."""
    out = select(message, fields)
    if not has_full_read():
        for key in BASIC_HIDDEN:
            out.pop(key, None)
    if expand and any(e.split("(")[0].lower() == "attachments" for e in expand):
        if not has_full_read():
            raise PermissionError
        out["attachments"] = [attachment_view(a) for a in message["attachments"]]
    return out


def attachment_view(attachment: dict[str, Any], expand_item: bool = False) -> dict[str, Any]:
    """An attachment as listed: itemAttachment's inner item only when expanded."""
    out = copy.deepcopy(attachment)
    if out["@odata.type"] == "#microsoft.graph.itemAttachment" and not expand_item:
        out.pop("item", None)
    return out


@bp.get("/users/<user_ref>")
@require_roles("User.Read.All", "User.ReadBasic.All", "Directory.Read.All")
def get_user(user_ref: str):
    try:
        return jsonify(_store().user(user_ref).to_graph())
    except NotFound:
        return graph_error(404, "Request_ResourceNotFound", f"Resource '{user_ref}' does not exist or one of its queried reference-property objects are not present.")


@bp.get("/users/<user_ref>/messages/<message_id>")
@require_roles(*READ_ROLES)
def get_message(user_ref: str, message_id: str):
    with _store().lock:
        message, error = _message(user_ref, message_id)
        if error:
            return error
        try:
            body = render_message(message, _csv("$select"), _csv("$expand"))
        except PermissionError:
            return graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    response = jsonify(body)
    prefer = request.headers.get("Prefer", "")
    if 'outlook.body-content-type="text"' in prefer.replace(" ", "").lower():
        if "body" in body and body["body"]["contentType"] == "html":
            import re

            text = re.sub(r"<[^>]+>", " ", body["body"]["content"])
            body["body"] = {"contentType": "text", "content": " ".join(text.split())}
            response = jsonify(body)
        response.headers["Preference-Applied"] = 'outlook.body-content-type="text"'
    return response


@bp.get("/users/<user_ref>/messages/<message_id>/attachments")
@require_roles("Mail.Read", "Mail.ReadWrite")
def list_attachments(user_ref: str, message_id: str):
    with _store().lock:
        message, error = _message(user_ref, message_id)
        if error:
            return error
        return jsonify({"value": [attachment_view(a) for a in message["attachments"]]})


def _attachment(message: dict[str, Any], attachment_id: str) -> dict[str, Any] | None:
    return next((a for a in message["attachments"] if a["id"] == attachment_id), None)


@bp.get("/users/<user_ref>/messages/<message_id>/attachments/<attachment_id>")
@require_roles("Mail.Read", "Mail.ReadWrite")
def get_attachment(user_ref: str, message_id: str, attachment_id: str):
    with _store().lock:
        message, error = _message(user_ref, message_id)
        if error:
            return error
        attachment = _attachment(message, attachment_id)
        if attachment is None:
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        expand = (request.args.get("$expand") or "").lower()
        return jsonify(attachment_view(attachment, expand_item="itemattachment/item" in expand))


@bp.get("/users/<user_ref>/messages/<message_id>/attachments/<attachment_id>/$value")
@require_roles("Mail.Read", "Mail.ReadWrite")
def attachment_value(user_ref: str, message_id: str, attachment_id: str):
    with _store().lock:
        message, error = _message(user_ref, message_id)
        if error:
            return error
        attachment = _attachment(message, attachment_id)
        if attachment is None:
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        kind = attachment["@odata.type"]
        if kind == "#microsoft.graph.referenceAttachment":
            return graph_error(405, "ErrorInvalidRequest", "The operation is not supported for reference attachments.")
        if kind == "#microsoft.graph.fileAttachment":
            data = base64.b64decode(attachment["contentBytes"])
            content_type = attachment.get("contentType") or "application/octet-stream"
        else:
            from .mime import message_to_mime

            data = message_to_mime(attachment["item"])
            content_type = "message/rfc822"

    def chunks(size: int = 64 * 1024):
        for start in range(0, len(data), size):
            yield data[start:start + size]

    return Response(chunks(), content_type=content_type, headers={"Content-Length": str(len(data))})


@bp.get("/users/<user_ref>/messages/<message_id>/$value")
@require_roles("Mail.Read", "Mail.ReadWrite")
def message_value(user_ref: str, message_id: str):
    from .mime import message_to_mime

    with _store().lock:
        message, error = _message(user_ref, message_id)
        if error:
            return error
        data = message_to_mime(message)
    return Response(data, content_type="text/plain")
