"""Common plumbing of the ``/v1.0`` API: bearer-token checks, permissions and Graph's error shape."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from typing import Any, Callable

import jwt
from flask import current_app, g, jsonify, request


def graph_error(status: int, code: str, message: str):
    """Graph's error body: ``{"error": {"code", "message", "innerError": {date, request-id, client-request-id}}}``."""
    request_id = str(uuid.uuid4())
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": request.headers.get("client-request-id", request_id),
            },
        }
    }
    return jsonify(body), status


def authenticate() -> Any:
    """Check the bearer token; set ``g.app_id``, ``g.tenant_id`` and ``g.roles``; return an error response or None.

    A token of an app whose consent in its tenant was revoked is refused with 403 ``ErrorAccessDenied``
    (the app has no permission left there) while ``emu.refuse_revoked_tokens`` is on; see docs/emulator.md.
    """
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
    emu = current_app.config["EMULATOR"]
    try:
        claims = emu.directory.verify_access_token(header[7:])
    except jwt.ExpiredSignatureError:
        return graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
    except jwt.PyJWTError:
        return graph_error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience or signature.")
    g.app_id, g.tenant_id = claims["appid"], claims.get("tid", emu.tenant_id)
    g.roles = frozenset(claims.get("roles", ()))
    if emu.refuse_revoked_tokens and not emu.directory.consented(g.app_id, g.tenant_id):
        return graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    return None


def find_user(ref: str) -> Any:
    """The user ``ref`` (GUID or address) in the caller's tenant; :class:`~emulator.mailstore.NotFound` otherwise.

    Graph looks users up in the directory of the token's ``tid``: another tenant's mailbox is not found,
    exactly like one that does not exist (no hint that it exists elsewhere).
    """
    return current_app.config["EMULATOR"].mail.user(ref, tenant=g.tenant_id)


def require_roles(*any_of: str) -> Callable:
    """Answer 403 unless the token carries one of ``any_of`` (no names: any valid token)."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any):
            if any_of and not (g.roles & set(any_of)):
                return graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            return view(*args, **kwargs)

        return wrapper

    return decorator


def has_full_read() -> bool:
    """Mail.Read or Mail.ReadWrite: body, attachments and sub-folders are visible."""
    return bool(g.roles & {"Mail.Read", "Mail.ReadWrite"})


# --- helpers shared by the mail blueprints --------------------------------------------------------
BASIC_HIDDEN = {"body", "bodyPreview", "uniqueBody", "attachments", "internetMessageHeaders"}
DEFAULT_PAGE, MAX_PAGE = 10, 1000  # Outlook collections: 10 items per page unless $top says otherwise


def emulator() -> Any:
    """The Emulator serving this request."""
    return current_app.config["EMULATOR"]


def prefer(name: str) -> str | None:
    """The value of one ``Prefer`` preference (``IdType``, ``odata.maxpagesize``, ...), unquoted."""
    for header in request.headers.getlist("Prefer"):
        for part in header.split(","):
            key, _, value = part.strip().partition("=")
            if key.strip().lower() == name.lower():
                return value.strip().strip('"') or ""
    return None


def prefers_immutable() -> bool:
    """``Prefer: IdType="ImmutableId"`` (https://learn.microsoft.com/graph/outlook-immutable-id)."""
    return (prefer("IdType") or "").lower() == "immutableid"


def csv_arg(name: str) -> list[str] | None:
    value = request.args.get(name)
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def action_body(*names: str) -> dict[str, Any] | None:
    """An action's JSON body with its parameter names spelled as ``names``, whatever case the client used.

    Graph binds action parameters case-insensitively: the docs write ``destinationId``, Microsoft's generated
    SDKs and snippets send the metadata's ``DestinationId``, and both work. None when the body is not an object.
    """
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return None
    spelling = {name.lower(): name for name in names}
    return {spelling.get(key.lower(), key): value for key, value in body.items()}


# Graph's 400 for a $select naming a property the type does not have, per type: (code, message prefix).
# Observed: Outlook's "RequestBroker--ParseUri" for messages (microsoftgraph/microsoft-graph-explorer-v4#3916);
# Graph's OData layer "Parsing OData Select and Expand failed: …" for directory objects and others.
_SELECT_ERRORS = {
    "message": ("RequestBroker--ParseUri", ""),
    "user": ("BadRequest", "Parsing OData Select and Expand failed: "),
}


def bad_select(fields: list[str] | None, known: Any, entity: str):
    """The 400 response for the first ``$select``ed name that ``entity`` lacks (case-insensitive), or None."""
    names = {name.lower() for name in known}
    unknown = next((f for f in fields or () if f.lower() not in names), None)
    if unknown is None:
        return None
    code, prefix = _SELECT_ERRORS[entity]
    return graph_error(400, code, f"{prefix}Could not find a property named '{unknown}' on type 'microsoft.graph.{entity}'.")


def not_found_item():
    return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def invalid_user(ref: str):
    return graph_error(404, "ErrorInvalidUser", f"The requested user '{ref}' is invalid.")


NESTED_ATTACHMENT_LEVELS = 30  # how deep an expanded item attachment shows its own attachments


def render_message(message: dict[str, Any], fields: list[str] | None = None, expand: list[str] | None = None,
                   immutable: bool | None = None) -> dict[str, Any]:
    """Serialize a message honouring $select, $expand=attachments, immutable ids and permissions."""
    from .mailstore import select_message

    out = select_message(message, fields)
    if immutable if immutable is not None else prefers_immutable():
        out["id"] = message["_immutableId"]
    if not has_full_read():
        for key in BASIC_HIDDEN:
            out.pop(key, None)
    if expand and any(e.split("(")[0].lower() == "attachments" for e in expand):
        if not has_full_read():
            raise PermissionError("attachments need Mail.Read")
        out["attachments"] = [attachment_view(a) for a in message["attachments"]]
    return out


def attachment_view(attachment: dict[str, Any], expand_item: bool = False, depth: int = 0) -> dict[str, Any]:
    """An attachment as listed: itemAttachment's inner item only when expanded.

    Expanding an item attachment (``$expand=microsoft.graph.itemattachment/item``) returns the
    attached message's properties "including any nested attachments up to 30 levels"
    (https://learn.microsoft.com/graph/api/attachment-get): file attachments with their
    ``contentBytes``, item attachments with their own items.
    """
    import copy

    out = copy.deepcopy(attachment)
    if out["@odata.type"] == "#microsoft.graph.itemAttachment":
        if expand_item:
            item = {"@odata.type": "#microsoft.graph.message",  # as documented; SDKs build a Message from it
                    **{k: v for k, v in out["item"].items() if not k.startswith("_") and k != "attachments"}}
            item["attachments"] = [attachment_view(a, expand_item=depth + 1 < NESTED_ATTACHMENT_LEVELS, depth=depth + 1)
                                   for a in attachment["item"].get("attachments", [])]
            out["item"] = item
        else:
            out.pop("item", None)
    return out


def page_size(default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE) -> int:
    """``$top`` (or ``Prefer: odata.maxpagesize``), clamped to Graph's maximum."""
    raw = request.args.get("$top") or prefer("odata.maxpagesize")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"Invalid value '{raw}' for $top.") from None
    if value < 0:
        raise ValueError(f"Invalid value '{raw}' for $top.")
    return min(value, maximum)


def next_link(changes: dict[str, Any]) -> str:
    """This request's URL with some query options replaced (``None`` removes one)."""
    from urllib.parse import quote, urlencode

    args = dict(request.args.items())
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = str(value)
    query = urlencode(args, safe="$,'():@", quote_via=quote)  # Graph leaves $ and OData punctuation as is
    return f"{request.base_url}?{query}" if args else request.base_url
