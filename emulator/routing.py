"""Graph's tolerance for how a URL is spelled, and its JSON error shape for every failure.

Microsoft's own examples use spellings a strict router would refuse; Graph accepts all of them,
so the emulator rewrites the path (before Flask routes it) to the one form its views know:

- a slash before the query: ``messages/{id}/?$select=…`` (api/message-get.md, example 2);
- segment names in any case: ``mailfolders``, ``Messages``, ``Attachments`` (api/message-delta.md);
- the key-in-parentheses form: ``Users('…')/Messages('…')/Attachments('…')`` and
  ``mailFolders('Inbox')`` (concepts/change-notifications-delivery-webhooks.md,
  api/attachment-get.md ``item@odata.context``);
- ``{user-guid}@{tenant-guid}`` as the user key, as change notifications name it
  (concepts/change-notifications-delivery-webhooks.md); the user is then looked up in the caller's tenant only.

Errors under ``/v1.0`` are always ``{"error": {"code", "message", "innerError"}}`` JSON, never
Werkzeug's HTML pages: unknown routes (404), wrong methods (405) and crashes (500) included,
so a ``$batch`` part that fails carries a JSON object too.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Collection

from flask import Blueprint, request
from werkzeug.exceptions import HTTPException, InternalServerError

from .graphapi import graph_error

bp = Blueprint("routing", __name__)

# Segment names as the views spell them (any case in, this case out).
NAMES = {n.lower(): n for n in (
    "users", "messages", "mailFolders", "childFolders", "attachments", "subscriptions", "sendMail", "move", "copy",
    "forward", "reply", "replyAll", "createReply", "createReplyAll", "createForward", "send", "permanentDelete",
    "createUploadSession", "delta", "reauthorize", "$value", "$batch", "me",
)}
# Collections whose next segment is a key (left as given).
KEYED = {"users", "messages", "mailFolders", "childFolders", "attachments", "subscriptions"}
_PAREN_KEY = re.compile(r"^([A-Za-z$]+)\('(.*)'\)$", re.DOTALL)
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_USER_AT_TENANT = re.compile(rf"^({_GUID})@({_GUID})$")
_VERSIONS = ("/v1.0/", "/beta/")


def canonical_path(path: str, tenant_id: str | Collection[str] | None = None) -> str:
    """The path as the emulator's views spell it (see the module docstring); other paths unchanged."""
    version = next((v for v in _VERSIONS if path.lower().startswith(v)), None)
    if version is None:
        return path
    segments: list[str] = []
    for raw in path[len(version):].rstrip("/").split("/"):
        match = _PAREN_KEY.match(raw)
        parts = [match.group(1), match.group(2).replace("''", "'")] if match else [raw]
        for part in parts:
            keyed = bool(segments) and segments[-1] in KEYED and not match_name_only(segments)
            segments.append(part if keyed else NAMES.get(part.lower(), part))
    if len(segments) >= 2 and segments[0] == "users":
        found = _USER_AT_TENANT.match(segments[1])
        tenants = {tenant_id} if isinstance(tenant_id, str) else set(tenant_id or ())
        if found and found.group(2).lower() in {t.lower() for t in tenants}:  # the tenant check is the user lookup's
            segments[1] = found.group(1)
    return version[:-1] + "/" + "/".join(segments) if segments else path


def match_name_only(segments: list[str]) -> bool:
    """Whether the last segment is itself a key (``…/messages/messages`` is a message whose id is "messages")."""
    return len(segments) >= 2 and segments[-2] in KEYED


class CanonicalPaths:
    """WSGI middleware: rewrite ``PATH_INFO`` with :func:`canonical_path` before routing."""

    def __init__(self, app: Callable, tenant_id: Callable[[], str | Collection[str]]) -> None:
        self.app, self.tenant_id = app, tenant_id

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Any:
        path = environ.get("PATH_INFO", "")
        fixed = canonical_path(path, self.tenant_id())
        if fixed != path:
            environ = {**environ, "PATH_INFO": fixed}
        return self.app(environ, start_response)


@bp.record_once
def _install(state: Any) -> None:
    app = state.app
    app.wsgi_app = CanonicalPaths(app.wsgi_app, lambda: app.config["EMULATOR"].directory.tenant_ids)


def _graph_path() -> bool:
    return any(request.path.startswith(v) for v in _VERSIONS)


@bp.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    if not _graph_path():
        return exc
    status = exc.code or 500
    if status == 404:
        segment = request.path.rstrip("/").rsplit("/", 1)[-1]
        return graph_error(404, "ResourceNotFound", f"Resource not found for the segment '{segment}'.")
    if status == 405:
        return graph_error(405, "MethodNotAllowed", f"The HTTP method '{request.method}' is not allowed for "
                                                    f"the resource '{request.path}'.")
    if status >= 500:
        return graph_error(status, "InternalServerError", exc.description or "An internal server error occurred.")
    return graph_error(status, "BadRequest", exc.description or exc.name)


@bp.app_errorhandler(InternalServerError)
def _crash(exc: InternalServerError):
    if not _graph_path():
        return exc
    return graph_error(500, "InternalServerError", "An internal server error occurred.")
