"""Users and mail folders: ``GET /users`` (paged), ``/users/{id}``, ``mailFolders`` and ``childFolders``.

- ``GET /users`` pages with ``$skiptoken`` (100 per page by default, ``$top``
  up to 999), honours ``$select`` and a simple ``$filter``
  (https://learn.microsoft.com/graph/api/user-list).
- ``mailFolders`` lists the top-level folders (10 per page unless ``$top``);
  a folder is addressed by id or well-known name (``inbox``, ``deleteditems``,
  ...); ``includeHiddenFolders=true`` adds hidden ones
  (https://learn.microsoft.com/graph/api/user-list-mailfolders).
- Creating a folder whose name already exists under the same parent answers
  409 ``ErrorFolderExists`` (https://learn.microsoft.com/graph/api/user-post-mailfolders).
- ``/me`` is refused: app-only tokens have no signed-in user.
"""

from __future__ import annotations

import base64
from typing import Any

from flask import Blueprint, g, jsonify, request

from .graphapi import (
    bad_select,
    csv_arg,
    emulator,
    find_user,
    graph_error,
    invalid_user,
    next_link,
    not_found_item,
    page_size,
    require_roles,
)
from .mailstore import Conflict, NotFound, select
from .query import QueryError, parse_filter
from .resources import USER_PROPERTIES

bp = Blueprint("folders", __name__, url_prefix="/v1.0")

USER_ROLES = ("User.Read.All", "User.ReadBasic.All", "Directory.Read.All")
READ_ROLES = ("Mail.Read", "Mail.ReadWrite", "Mail.ReadBasic", "Mail.ReadBasic.All")
USER_PAGE, USER_MAX = 100, 999


@bp.route("/me", defaults={"rest": ""}, methods=["GET", "POST", "PATCH", "DELETE"])
@bp.route("/me/<path:rest>", methods=["GET", "POST", "PATCH", "DELETE"])
def me(rest: str):
    return graph_error(400, "BadRequest", "/me request is only valid with delegated authentication flow.")


def _select_user(user: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """``$select`` on a user: a documented property the emulator does not hold comes back null, as an unset one."""
    out = select(user, fields)
    held = {key.lower() for key in out}
    spelling = {name.lower(): name for name in USER_PROPERTIES}
    for field in fields or ():
        if field.lower() not in held:
            out[spelling[field.lower()]] = None
            held.add(field.lower())
    return out


def _token_offset() -> int:
    token = request.args.get("$skiptoken")
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode().partition(":")[2])
    except ValueError:
        raise QueryError("BadRequest", f"Invalid $skiptoken '{token}'.") from None


@bp.get("/users")
@require_roles(*USER_ROLES)
def list_users():
    fields = csv_arg("$select")
    refused = bad_select(fields, USER_PROPERTIES, "user")
    if refused:
        return refused
    store = emulator().mail
    with store.lock:
        users = sorted((u.to_graph() for u in store.tenant_users(g.tenant_id)), key=lambda u: u["userPrincipalName"].lower())
    try:
        if request.args.get("$filter"):
            known = {k.lower() for k in users[0]} if users else None
            flt = parse_filter(request.args["$filter"], known, "microsoft.graph.user")
            users = [u for u in users if flt(u)]
        top, skip = page_size(USER_PAGE, USER_MAX), _token_offset()
    except QueryError as exc:
        return graph_error(400, "Request_UnsupportedQuery" if exc.code == "BadRequest" else exc.code, exc.message)
    except ValueError as exc:
        return graph_error(400, "Request_BadRequest", str(exc))
    body: dict[str, Any] = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
                            "value": [_select_user(u, fields) for u in users[skip:skip + top]]}
    if skip + top < len(users):
        token = base64.urlsafe_b64encode(f"users:{skip + top}".encode()).decode()
        body["@odata.nextLink"] = next_link({"$skiptoken": token})
    return jsonify(body)


@bp.get("/users/<user_ref>")
@require_roles(*USER_ROLES)
def get_user(user_ref: str):
    fields = csv_arg("$select")
    refused = bad_select(fields, USER_PROPERTIES, "user")
    if refused:
        return refused
    try:
        user = find_user(user_ref)
    except NotFound:
        return graph_error(404, "Request_ResourceNotFound", f"Resource '{user_ref}' does not exist or one of its queried reference-property objects are not present.")
    return jsonify({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
                    **_select_user(user.to_graph(), fields)})


def _folder_page(user, folders: list) -> Any:
    try:
        items = [f.to_graph(user) for f in folders]
        if request.args.get("$filter"):
            flt = parse_filter(request.args["$filter"], {k.lower() for k in items[0]} if items else None,
                               "Microsoft.OutlookServices.MailFolder")
            items = [i for i in items if flt(i)]
        top, skip = page_size(), int(request.args.get("$skip", 0))
    except QueryError as exc:
        return graph_error(400, exc.code, exc.message)
    except ValueError as exc:
        return graph_error(400, "BadRequest", str(exc))
    fields = csv_arg("$select")
    body: dict[str, Any] = {"@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#users('{user.id}')/mailFolders"}
    if request.args.get("$count", "").lower() == "true":
        body["@odata.count"] = len(items)
    body["value"] = [select(i, fields) for i in items[skip:skip + top]]
    if skip + top < len(items):
        body["@odata.nextLink"] = next_link({"$skip": skip + top})
    return jsonify(body)


def _user(user_ref: str):
    try:
        return find_user(user_ref), None
    except NotFound:
        return None, invalid_user(user_ref)


def _hidden_too() -> bool:
    return request.args.get("includeHiddenFolders", "").lower() == "true"


@bp.get("/users/<user_ref>/mailFolders")
@require_roles(*READ_ROLES)
def list_folders(user_ref: str):
    user, error = _user(user_ref)
    if error:
        return error
    with emulator().mail.lock:
        return _folder_page(user, user.children(user.root_id, _hidden_too()))


@bp.get("/users/<user_ref>/mailFolders/<folder_ref>")
@require_roles(*READ_ROLES)
def get_folder(user_ref: str, folder_ref: str):
    user, error = _user(user_ref)
    if error:
        return error
    with emulator().mail.lock:
        try:
            folder = user.folder(folder_ref)
        except NotFound:
            return not_found_item()
        return jsonify(select(folder.to_graph(user), csv_arg("$select")))


@bp.get("/users/<user_ref>/mailFolders/<folder_ref>/childFolders")
@require_roles(*READ_ROLES)
def list_children(user_ref: str, folder_ref: str):
    user, error = _user(user_ref)
    if error:
        return error
    with emulator().mail.lock:
        try:
            parent = user.folder(folder_ref)
        except NotFound:
            return not_found_item()
        return _folder_page(user, user.children(parent.id, _hidden_too()))


@bp.post("/users/<user_ref>/mailFolders", defaults={"folder_ref": None})
@bp.post("/users/<user_ref>/mailFolders/<folder_ref>/childFolders")
@require_roles("Mail.ReadWrite")
def create_folder(user_ref: str, folder_ref: str | None):
    body = request.get_json(silent=True)
    name = body.get("displayName") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name.strip():
        return graph_error(400, "ErrorInvalidArgument", "The displayName property is required.")
    user, error = _user(user_ref)
    if error:
        return error
    emu = emulator()
    with emu.mail.lock:
        try:
            parent = user.folder(folder_ref) if folder_ref else user.folders[user.root_id]
        except NotFound:
            return not_found_item()
        try:
            folder = emu.mail.create_folder(user, parent, name.strip(), bool(body.get("isHidden", False)))
        except Conflict:
            return graph_error(409, "ErrorFolderExists", "A folder with the specified name already exists.")
        out = folder.to_graph(user)
    emu.record("folder.created", mailbox=user.mail, id=folder.id, displayName=folder.display_name)
    return jsonify({"@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#users('{user.id}')/mailFolders/$entity",
                    **out}), 201


