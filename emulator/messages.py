"""Messages: list (per user and per folder, with OData options), get, PATCH, DELETE, attachments, ``$value``.

Each item route answers both ``/users/{id}/messages/{id}`` and
``/users/{id}/mailFolders/{id}/messages/{id}``, as Graph does.

- Listing (https://learn.microsoft.com/graph/api/user-list-messages): 10 per
  page unless ``$top`` (at most 1,000), ``@odata.nextLink`` with ``$skip``,
  ``$count=true``, newest first; ``$search`` may not be combined with
  ``$filter`` or ``$orderby``, returns at most 1,000 results sorted by
  sent time, and pages with ``$skiptoken``.
- DELETE is a soft delete: the message leaves the visible folders for
  Recoverable Items *Deletions* (the well-known ``recoverableitemsdeletions``
  folder), not Deleted Items; ``POST …/permanentDelete`` puts it in *Purges*,
  out of any client's reach (https://learn.microsoft.com/graph/api/message-permanentdelete).
  A user's "delete" in Outlook is a ``move`` to ``deleteditems``.
"""

from __future__ import annotations

import base64
import html
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request

from . import odata
from .graphapi import (
    attachment_view,
    bad_select,
    csv_arg,
    emulator,
    find_user,
    graph_error,
    invalid_user,
    next_link,
    not_found_item,
    page_size,
    prefer,
    render_message,
    require_roles,
)
from .mailstore import MESSAGE_PROPERTIES, RECOVERABLE, NotFound
from .query import QueryError, check_orderby_with_filter, parse_filter, parse_orderby, parse_search, sort
from .resources import SELECTABLE_MESSAGE

bp = Blueprint("messages", __name__, url_prefix="/v1.0/users/<user_ref>")

READ_ROLES = ("Mail.Read", "Mail.ReadWrite", "Mail.ReadBasic", "Mail.ReadBasic.All")
FULL_READ = ("Mail.Read", "Mail.ReadWrite")
SEARCH_CAP = 1000  # "A $search request returns up to 1000 results."
KNOWN = {p.lower() for p in MESSAGE_PROPERTIES}
# PATCH: what a received (non-draft) message lets you change; drafts may change more.
UPDATABLE = {"isRead", "categories", "flag", "importance", "inferenceClassification",
             "isDeliveryReceiptRequested", "isReadReceiptRequested"}
DRAFT_UPDATABLE = {"subject", "body", "toRecipients", "ccRecipients", "bccRecipients", "replyTo", "from", "sender",
                   "internetMessageId"}


def item_routes(blueprint: Blueprint, rule: str, **options: Any):
    """Register a view under both the mailbox-wide and the per-folder message paths."""

    def decorator(view):
        blueprint.add_url_rule(f"/messages/<message_id>{rule}", view_func=view, defaults={"folder_ref": None}, **options)
        blueprint.add_url_rule(f"/mailFolders/<folder_ref>/messages/<message_id>{rule}", view_func=view, **options)
        return view

    return decorator


def load(user_ref: str, message_id: str):
    """``(user, folder, message, None)`` or ``(None, None, None, error response)``."""
    try:
        user = find_user(user_ref)
    except NotFound:
        return None, None, None, invalid_user(user_ref)
    try:
        folder, message = user.find_message(message_id)
    except NotFound:
        return user, None, None, not_found_item()
    return user, folder, message, None


def _bad(exc: QueryError):
    return graph_error(400, exc.code, exc.message)


def _skip() -> int:
    token = request.args.get("$skiptoken")
    try:
        if token:
            return int(base64.urlsafe_b64decode(token.encode()).decode().partition(":")[2])
        return int(request.args.get("$skip", 0))
    except ValueError:
        raise QueryError("BadRequest", "Invalid $skip or $skiptoken.") from None


@bp.get("/messages", defaults={"folder_ref": None})
@bp.get("/mailFolders/<folder_ref>/messages")
@require_roles(*READ_ROLES)
def list_messages(user_ref: str, folder_ref: str | None):
    fields, expand = csv_arg("$select"), csv_arg("$expand")
    refused = bad_select(fields, SELECTABLE_MESSAGE, "message")
    if refused:
        return refused
    store = emulator().mail
    with store.lock:
        try:
            user = find_user(user_ref)
        except NotFound:
            return invalid_user(user_ref)
        if folder_ref is None:
            items = user.visible_messages()
        else:
            try:
                items = list(user.folder(folder_ref).messages.values())
            except NotFound:
                return not_found_item()
    search, flt, orderby = request.args.get("$search"), request.args.get("$filter"), request.args.get("$orderby")
    try:
        if search is not None:
            for name, given in (("$filter", flt), ("$orderby", orderby)):
                if given:
                    raise QueryError("ErrorInvalidUrlQuery", f"The query parameter '{name}' is not supported with '$search'.")
            matched = sort([m for m in items if parse_search(search)(m)], [("sentDateTime", True)])[:SEARCH_CAP]
        else:
            order = parse_orderby(orderby) if orderby else [("receivedDateTime", True)]
            if flt:
                parsed = parse_filter(flt, KNOWN)
                if orderby:
                    check_orderby_with_filter(order, parsed)
                items = [m for m in items if parsed(m)]
            matched = sort(items, order)
        top, skip = page_size(), _skip()
    except QueryError as exc:
        return _bad(exc)
    except ValueError as exc:
        return graph_error(400, "BadRequest", str(exc))
    try:
        page = [odata.list_item(render_message(m, fields, expand), m) for m in matched[skip:skip + top]]
    except PermissionError:
        return graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    where = f"mailFolders('{folder_ref}')/messages" if folder_ref else "messages"
    body: dict[str, Any] = {"@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#users('{user.id}')/{where}"}
    if request.args.get("$count", "").lower() == "true":
        body["@odata.count"] = len(matched)
    body["value"] = page
    if skip + top < len(matched) and top > 0:
        if search is not None:
            token = base64.urlsafe_b64encode(f"skip:{skip + top}".encode()).decode()
            body["@odata.nextLink"] = next_link({"$skiptoken": token, "$skip": None})
        else:
            body["@odata.nextLink"] = next_link({"$skip": skip + top, "$skiptoken": None})
    return jsonify(body)


@item_routes(bp, "", methods=["GET"])
@require_roles(*READ_ROLES)
def get_message(user_ref: str, folder_ref: str | None, message_id: str):
    fields = csv_arg("$select")
    refused = bad_select(fields, SELECTABLE_MESSAGE, "message")
    if refused:
        return refused
    with emulator().mail.lock:
        user, _, message, error = load(user_ref, message_id)
        if error:
            return error
        try:
            body = odata.message_entity(render_message(message, fields, csv_arg("$expand")), message, user.id, fields)
        except PermissionError:
            return graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    wanted = (prefer("outlook.body-content-type") or "").lower()
    applied = None
    if wanted in ("text", "html"):
        applied = f'outlook.body-content-type="{wanted}"'
        for key in ("body", "uniqueBody"):
            if key in body and body[key]["contentType"] != wanted:
                content = body[key]["content"]
                if wanted == "text":
                    content = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", content)).split())
                else:
                    content = f"<html><body><div>{html.escape(content)}</div></body></html>"
                body[key] = {"contentType": wanted, "content": content}
    response = jsonify(body)
    if applied:
        response.headers["Preference-Applied"] = applied
    return response


@item_routes(bp, "", methods=["PATCH"])
@require_roles("Mail.ReadWrite")
def update_message(user_ref: str, folder_ref: str | None, message_id: str):
    changes = request.get_json(silent=True)
    if not isinstance(changes, dict):
        return graph_error(400, "BadRequest", "Empty Payload. JSON content expected.")
    emu = emulator()
    with emu.mail.lock:
        user, folder, message, error = load(user_ref, message_id)
        if error:
            return error
        allowed = UPDATABLE | (DRAFT_UPDATABLE if message["isDraft"] else set())
        for key, value in changes.items():
            if key.startswith("@"):
                continue
            if key not in MESSAGE_PROPERTIES:
                return graph_error(400, "RequestBodyRead", f"The property '{key}' does not exist on type 'microsoft.graph.message'. Make sure to only use property names that are defined by the type or mark the type as open type.")
            if key not in allowed:
                return graph_error(400, "ErrorInvalidPropertyUpdateSentMessage", f"Update operation not allowed for property: {key[0].upper() + key[1:]}.")
            problem = _check_value(key, value)
            if problem:
                return graph_error(400, "ErrorInvalidArgument", problem)
        before = dict(message)
        for key, value in changes.items():
            if not key.startswith("@"):
                message[key] = {**message["flag"], **value} if key == "flag" else value
        emu.mail.touch(message)
        out = odata.message_entity(render_message(message), message, user.id)
    emu.notify_change(user.id, folder.id, message, "updated", before=before)
    return jsonify(out)


def _check_value(key: str, value: Any) -> str | None:
    if key in ("isRead", "isDeliveryReceiptRequested", "isReadReceiptRequested") and not isinstance(value, bool):
        return f"{key} must be a boolean, got {value!r}."
    if key == "categories" and not (isinstance(value, list) and all(isinstance(c, str) for c in value)):
        return f"categories must be an array of strings, got {value!r}."
    if key == "importance" and value not in ("low", "normal", "high"):
        return f"importance must be low, normal or high, got {value!r}."
    if key == "flag" and not (isinstance(value, dict) and value.get("flagStatus", "flagged") in ("notFlagged", "complete", "flagged")):
        return f"flag.flagStatus must be notFlagged, complete or flagged, got {value!r}."
    if key == "inferenceClassification" and value not in ("focused", "other"):
        return f"inferenceClassification must be focused or other, got {value!r}."
    return None


@item_routes(bp, "", methods=["DELETE"])
@require_roles("Mail.ReadWrite")
def delete_message(user_ref: str, folder_ref: str | None, message_id: str):
    emu = emulator()
    with emu.mail.lock:
        user, folder, message, error = load(user_ref, message_id)
        if error:
            return error
        if folder.well_known == RECOVERABLE:
            # Observed code and message (microsoftgraph/microsoft-graph-docs#2894); the status is inferred.
            return graph_error(400, "ErrorCannotDeleteObject", "Object cannot be deleted.")
        emu.mail.move(user, message, user.folder(RECOVERABLE))
    emu.notify_change(user.id, folder.id, message, "deleted")
    return "", 204


@item_routes(bp, "/permanentDelete", methods=["POST"])
@require_roles("Mail.ReadWrite")
def permanent_delete(user_ref: str, folder_ref: str | None, message_id: str):
    emu = emulator()
    with emu.mail.lock:
        user, folder, message, error = load(user_ref, message_id)
        if error:
            return error
        emu.mail.purge(user, message)
    emu.notify_change(user.id, folder.id, message, "deleted")
    return "", 204


@item_routes(bp, "/attachments", methods=["GET"])
@require_roles(*FULL_READ)
def list_attachments(user_ref: str, folder_ref: str | None, message_id: str):
    with emulator().mail.lock:
        user, _, message, error = load(user_ref, message_id)
        if error:
            return error
        return jsonify({"@odata.context": odata.attachments_context(user.id, message_id, False),
                        "value": [attachment_view(a) for a in message["attachments"]]})


def _attachment(user_ref: str, message_id: str, attachment_id: str):
    """``(attachment, None)`` or ``(None, error response)``; call under the store lock."""
    _, _, message, error = load(user_ref, message_id)
    if error:
        return None, error
    attachment = next((a for a in message["attachments"] if a["id"] == attachment_id), None)
    return (attachment, None) if attachment is not None else (None, not_found_item())


@item_routes(bp, "/attachments/<attachment_id>", methods=["GET"])
@require_roles(*FULL_READ)
def get_attachment(user_ref: str, folder_ref: str | None, message_id: str, attachment_id: str):
    with emulator().mail.lock:
        attachment, error = _attachment(user_ref, message_id, attachment_id)
        if error:
            return error
        expand = (request.args.get("$expand") or "").lower()
        user = find_user(user_ref)
        return jsonify(odata.attachment_entity(attachment_view(attachment, expand_item="itemattachment/item" in expand),
                                               user.id, message_id))


@item_routes(bp, "/attachments/<attachment_id>/$value", methods=["GET"])
@require_roles(*FULL_READ)
def attachment_value(user_ref: str, folder_ref: str | None, message_id: str, attachment_id: str):
    from .mime import message_to_mime

    with emulator().mail.lock:
        attachment, error = _attachment(user_ref, message_id, attachment_id)
        if error:
            return error
        kind = attachment["@odata.type"]
        if kind == "#microsoft.graph.referenceAttachment":
            return graph_error(405, "ErrorInvalidRequest", "The operation is not supported for reference attachments.")
        if kind == "#microsoft.graph.fileAttachment":
            data = base64.b64decode(attachment["contentBytes"])
            content_type = attachment.get("contentType") or "application/octet-stream"
        else:
            data = message_to_mime(attachment["item"])
            content_type = "message/rfc822"

    def chunks(size: int = 64 * 1024):
        for start in range(0, len(data), size):
            yield data[start:start + size]

    return Response(chunks(), content_type=content_type, headers={"Content-Length": str(len(data))})


@item_routes(bp, "/$value", methods=["GET"])
@require_roles(*FULL_READ)
def message_value(user_ref: str, folder_ref: str | None, message_id: str):
    from .mime import message_to_mime

    with emulator().mail.lock:
        _, _, message, error = load(user_ref, message_id)
        if error:
            return error
        data = message_to_mime(message)
    return Response(data, content_type="text/plain")

