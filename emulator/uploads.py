"""Upload sessions: attaching a file of 3 MiB to 150 MiB to a message (drafts are :mod:`emulator.drafts`).

- ``POST …/messages/{id}/attachments/createUploadSession`` with
  ``{"AttachmentItem": {"attachmentType": "file", "name", "size", "contentType"?,
  "isInline"?, "contentId"?}}`` answers 201 with an ``uploadSession``
  (https://learn.microsoft.com/graph/api/attachment-createuploadsession). Its
  ``uploadUrl`` has the shape of Outlook's (``/api/v2.0/Users('{id}@{tenant}')/
  Messages('{id}')/AttachmentSessions('{id}')?authtoken=…``) on the emulator's host.
- The upload URL (https://learn.microsoft.com/graph/outlook-large-attachments):
  ``PUT`` with ``Content-Range: bytes {start}-{end}/{total}`` and the raw bytes, in
  order; 200 ``{"@odata.context", "ExpirationDateTime", "nextExpectedRanges": ["{start}"]}``
  (the casing of the documented example) until the last byte, then 201 with an
  empty body and a ``Location`` header,
  ``…/api/v2.0/Users('{id}@{tenant}')/Messages('{id}')/Attachments('{attachment id}')``
  as documented; the attachment is then on the message. ``DELETE`` cancels: 204.
Limits enforced:

- An upload session's ``size`` must be **3 MiB to 150 MiB** (157,286,400 bytes):
  below, 400 ``ErrorAttachmentSizeShouldNotBeLessThanMinimumSize`` (the documented
  code; status inferred); above, 400 ``ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize``
  (inferred); size not a positive integer, a missing ``AttachmentItem`` or an
  ``attachmentType`` other than ``file``: 400 ``ErrorInvalidArgument``.
  ``emu.uploads.min_size`` / ``max_size`` change the bounds.
- Sessions live **1 hour** (``emu.uploads.lifetime``) on the emulator clock; uploading
  does not extend them ("remains the same as returned by the initial uploadSession").
- On the upload URL: an ``Authorization`` header is refused with **401**
  ("Do not specify an Authorization request header"); a missing or wrong ``authtoken``
  is **401**; an expired session is **401** ``InvalidAuthenticationToken`` (its token
  has lapsed; the bytes are dropped), and stays so; an unknown, cancelled or completed
  session is **404** ``ErrorItemNotFound``. A missing or malformed ``Content-Range``,
  a ``total`` other than the session's ``size``, ``end`` past the total, or a body
  whose length is not ``end - start + 1``: **400** ``InvalidContentRange``. A ``start``
  other than the next expected byte: **416** ``InvalidRange`` with the session's
  ``ExpirationDateTime`` and ``nextExpectedRanges`` next to the error.
  ``nextExpectedRanges`` is ``["0-"]`` until the first byte arrives, then ``["{start}"]``.
- Uploads count against the per-app-and-mailbox limits of ``throttle.py`` (4
  concurrent, the request rate and 150 MB per 5 minutes of uploads) under the app
  that created the session, as the bytes land in that mailbox (the emulator's choice;
  the docs say nothing); over them, 429 with ``Retry-After``. Fault rules of category ``graph`` apply to the upload URL
  (``path="AttachmentSessions"`` targets it).
"""

from __future__ import annotations

import datetime as dt
import mimetypes
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from .drafts import FILE, MiB, _attach, _json_body
from .graphapi import emulator, graph_error, not_found_item, require_roles
from .mailstore import NotFound, graph_id, make_attachment
from .messages import item_routes, load
from .subscriptions import format_time

bp = Blueprint("uploads", __name__, url_prefix="/v1.0/users/<user_ref>")  # createUploadSession
sessions_bp = Blueprint("upload_sessions", __name__, url_prefix="/api/v2.0")

MIN_SESSION_SIZE = 3 * MiB  # "Use this approach to attach a file if the file size is between 3 MB and 150 MB."
MAX_SESSION_SIZE = 150 * MiB
SESSION_LIFETIME = 3600.0  # s
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


# --- upload sessions -------------------------------------------------------------------------------
@dataclass
class UploadSession:
    """One attachment being uploaded: who may upload, what is expected and the bytes so far."""

    id: str
    token: str
    app_id: str
    user_id: str
    message_id: str  # as the client named the message (echoed in the URLs)
    immutable_id: str  # finds the message even if it moved meanwhile
    name: str
    size: int
    content_type: str | None
    is_inline: bool
    content_id: str | None
    expires: dt.datetime
    data: bytearray = field(default_factory=bytearray)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    tenant_id: str = ""  # the caller's tenant: in the URLs and the throttle key

    @property
    def next_expected(self) -> list[str]:
        """``["0-"]`` before the first byte, then Outlook's single ``"{start}"``."""
        return [str(len(self.data))] if self.data else ["0-"]

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.expires


class UploadSessions:
    """The open upload sessions of one emulator, by id; knobs ``lifetime``, ``min_size``, ``max_size``."""

    def __init__(self, lifetime: float = SESSION_LIFETIME, min_size: int = MIN_SESSION_SIZE,
                 max_size: int = MAX_SESSION_SIZE) -> None:
        self.lifetime, self.min_size, self.max_size = lifetime, min_size, max_size
        self.lock = threading.Lock()
        self.items: dict[str, UploadSession] = {}

    def open(self, now: dt.datetime, **fields: Any) -> UploadSession:
        session = UploadSession(id=graph_id("AAMkAS"), token=secrets.token_urlsafe(48),
                                expires=now + dt.timedelta(seconds=self.lifetime), **fields)
        with self.lock:
            for stale in self.items.values():  # expired sessions keep answering 401, without their bytes
                if stale.expired(now):
                    stale.data = bytearray()
            self.items[session.id] = session
        return session

    def get(self, session_id: str) -> UploadSession | None:
        with self.lock:
            return self.items.get(session_id)

    def close(self, session_id: str) -> None:
        with self.lock:
            self.items.pop(session_id, None)


def _outlook_base(session: UploadSession) -> str:
    """``https://{emulator}/api/v2.0/Users('{id}@{tenant}')/Messages('{id}')``, as Outlook's URLs go."""
    host = request.host_url.rstrip("/")
    return f"{host}/api/v2.0/Users('{session.user_id}@{session.tenant_id}')/Messages('{session.message_id}')"


def _upload_url(session: UploadSession) -> str:
    return f"{_outlook_base(session)}/AttachmentSessions('{session.id}')?authtoken={session.token}"


# --- creating a session --------------------------------------------------------------------------
def _attachment_item(body: dict[str, Any] | None) -> tuple[dict[str, Any] | None, Any]:
    """``(AttachmentItem, None)`` or ``(None, error response)``; the parameter name is matched case-insensitively."""
    item = next((v for k, v in (body or {}).items() if k.lower() == "attachmentitem"), None)
    if not isinstance(item, dict):
        return None, graph_error(400, "ErrorInvalidArgument", "The AttachmentItem parameter is required.")
    if str(item.get("attachmentType", "")).lower() != "file":
        return None, graph_error(400, "ErrorInvalidArgument",
                                 "AttachmentItem.attachmentType must be 'file' for an upload session.")
    if not isinstance(item.get("name"), str) or not item["name"]:
        return None, graph_error(400, "ErrorInvalidArgument", "AttachmentItem.name is required.")
    size = item.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        return None, graph_error(400, "ErrorInvalidArgument", "AttachmentItem.size must be a positive number of bytes.")
    for key, kind in (("contentType", str), ("contentId", str), ("isInline", bool)):
        if item.get(key) is not None and not isinstance(item[key], kind):
            return None, graph_error(400, "ErrorInvalidArgument", f"AttachmentItem.{key} has the wrong type.")
    limits = emulator().uploads
    if size < limits.min_size:
        return None, graph_error(400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                                 f"The attachment size {size} is below the minimum of {limits.min_size} bytes for an "
                                 "upload session; POST smaller files to the attachments collection.")
    if size > limits.max_size:
        return None, graph_error(400, "ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize",
                                 f"The attachment size {size} exceeds the maximum of {limits.max_size} bytes.")
    return item, None


@item_routes(bp, "/attachments/createUploadSession", methods=["POST"])
@require_roles("Mail.ReadWrite")
def create_upload_session(user_ref: str, folder_ref: str | None, message_id: str):
    item, problem = _attachment_item(_json_body())
    if problem:
        return problem
    emu = emulator()
    with emu.mail.lock:
        user, _, message, error = load(user_ref, message_id)
        if error:
            return error
        immutable_id = message["_immutableId"]
    session = emu.uploads.open(
        emu.clock.now(), app_id=g.app_id, tenant_id=g.tenant_id, user_id=user.id, message_id=message_id, immutable_id=immutable_id,
        name=item["name"], size=item["size"], content_type=item.get("contentType"),
        is_inline=bool(item.get("isInline", False)), content_id=item.get("contentId"))
    emu.record("upload.session", mailbox=user.mail, id=session.id, name=session.name, size=session.size)
    return jsonify({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.uploadSession",
        "uploadUrl": _upload_url(session),
        "expirationDateTime": format_time(session.expires),
        "nextExpectedRanges": session.next_expected,
    }), 201


# --- the pre-authenticated upload URL ------------------------------------------------------------------
_SESSION_RULE = "/Users('<user_key>')/Messages('<message_id>')/AttachmentSessions('<session_id>')"


def _session_for(user_key: str, message_id: str, session_id: str) -> tuple[UploadSession | None, Any]:
    """The session this request may use, or an error response (401 for credentials, 404 when gone)."""
    if "Authorization" in request.headers:
        return None, graph_error(401, "InvalidAuthenticationToken",
                                 "The upload URL is pre-authenticated; do not send an Authorization header.")
    emu = emulator()
    session = emu.uploads.get(session_id)
    if session is None or user_key.partition("@")[0] != session.user_id or message_id != session.message_id:
        return None, not_found_item()
    if not secrets.compare_digest(request.args.get("authtoken", "").encode(), session.token.encode()):
        return None, graph_error(401, "InvalidAuthenticationToken", "Access token validation failure.")
    if session.expired(emu.clock.now()):
        with session.lock:
            session.data = bytearray()
        return None, graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
    g.app_id = session.app_id  # for the request log
    emu.faults.maybe_fail("graph", request.method, request.path)
    return session, None


def _range(session: UploadSession) -> tuple[int, int, Any]:
    """``(start, end, None)`` from Content-Range, checked against the session and the body, or an error."""
    match = _CONTENT_RANGE.match(request.headers.get("Content-Range", "").strip())
    if match is None:
        return 0, 0, graph_error(400, "InvalidContentRange",
                                 "The Content-Range header is required, as 'bytes {start}-{end}/{total}'.")
    start, end, total = (int(v) for v in match.groups())
    if total != session.size:
        return 0, 0, graph_error(400, "InvalidContentRange",
                                 f"The total {total} in Content-Range is not the upload session's size {session.size}.")
    if end < start or end >= total:
        return 0, 0, graph_error(400, "InvalidContentRange", f"The range {start}-{end} does not fit a {total}-byte file.")
    return start, end, None


@sessions_bp.put(_SESSION_RULE)
def upload_range(user_key: str, message_id: str, session_id: str):
    # Read the body before any answer: the dev server closes every connection after answering, and
    # closing on unread bytes would reset the client mid-upload instead of letting it read the error.
    data = request.get_data(cache=False)
    session, error = _session_for(user_key, message_id, session_id)
    if error:
        return error
    emu = emulator()
    key = (session.app_id, session.tenant_id, session.user_id)  # the app, tenant and mailbox of createUploadSession (throttle.py)
    rejection = emu.throttle.acquire(key, len(data))
    if rejection is not None:
        response, status = graph_error(429, rejection.code, rejection.message)
        response.headers["Retry-After"] = f"{rejection.retry_after:g}"
        return response, status
    try:
        return _accept_range(session, data)
    finally:
        emu.throttle.release(key)


def _accept_range(session: UploadSession, data: bytes):
    start, end, error = _range(session)
    if error:
        return error
    with session.lock:
        if emulator().uploads.get(session.id) is not session:
            return not_found_item()  # cancelled or completed meanwhile
        if start != len(session.data):
            response, status = graph_error(416, "InvalidRange",
                                           f"Expected the range to start at byte {len(session.data)}, got {start}.")
            body = response.get_json()
            body.update({"ExpirationDateTime": format_time(session.expires), "nextExpectedRanges": session.next_expected})
            return jsonify(body), status
        if len(data) != end - start + 1:
            return graph_error(400, "InvalidContentRange",
                               f"The body has {len(data)} bytes; Content-Range {start}-{end} announces {end - start + 1}.")
        session.data += data
        if len(session.data) < session.size:
            return jsonify({
                "@odata.context": f"{request.host_url.rstrip('/')}/api/v2.0/$metadata#Users('{session.user_id}@"
                                  f"{session.tenant_id}')/Messages('{session.message_id}')/AttachmentSessions/$entity",
                "ExpirationDateTime": format_time(session.expires),
                "nextExpectedRanges": session.next_expected,
            })
        return _complete(session)


def _complete(session: UploadSession) -> Response | tuple:
    """The last byte arrived: attach the file, close the session, answer 201 with Location."""
    emu = emulator()
    emu.uploads.close(session.id)
    content, session.data = bytes(session.data), bytearray()
    content_type = session.content_type or mimetypes.guess_type(session.name)[0] or "application/octet-stream"
    with emu.mail.lock:
        try:
            user = emu.mail.user(session.user_id)
            folder, message = user.find_message(session.immutable_id)
        except NotFound:
            return not_found_item()  # the message went away during the upload
        attachment = make_attachment({"@odata.type": FILE, "name": session.name, "content": content,
                                      "contentType": content_type, "isInline": session.is_inline,
                                      "contentId": session.content_id}, emu.clock.now())
        _attach(message, attachment)
    emu.record("upload.completed", mailbox=user.mail, id=session.id, attachment=attachment["id"], size=len(content))
    emu.notify_change(user.id, folder.id, message, "updated")
    response = Response(status=201)
    response.headers["Location"] = f"{_outlook_base(session)}/Attachments('{attachment['id']}')"
    return response


@sessions_bp.delete(_SESSION_RULE)
def cancel_upload(user_key: str, message_id: str, session_id: str):
    session, error = _session_for(user_key, message_id, session_id)
    if error:
        return error
    with session.lock:
        emulator().uploads.close(session.id)
        session.data = bytearray()
    return "", 204
