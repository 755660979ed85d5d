"""Sending a new message with local files attached, of any size Graph allows (up to 150 MB each).

Graph takes attachments in three ways (https://learn.microsoft.com/graph/outlook-large-attachments):

- inline in ``sendMail``, when the whole JSON request stays under 4 MB: one request, the common case;
- ``POST …/messages/{id}/attachments`` on a draft, for a file under 3 MB;
- an upload session (``…/attachments/createUploadSession``) for a file of 3 MB to 150 MB: byte ranges
  are ``PUT`` in order to a pre-authenticated URL that must *not* get an ``Authorization`` header
  (https://learn.microsoft.com/graph/api/attachment-createuploadsession); the last range answers 201.

:func:`send_files` picks the one request when it can, else creates a draft, attaches every file the
way its size needs, and sends the draft (``POST …/send``). Files are read in ranges, never whole. If
anything fails the draft is deleted, so a failed send leaves nothing half-built in Drafts, and the
error says which file and how far it got. Exchange's own message-size limit (35 MB by default,
set by the tenant's administrators) still applies when the draft is sent.
"""

from __future__ import annotations

import base64
import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from graphhook.core.errors import ConfigError, GraphError
from workers.graph.client import GraphClient
from workers.graph.mailbox import message_path, recipients, user_path

log = logging.getLogger("graphhook.uploads")

SENDMAIL_MAX_BYTES = 4 * 1024 * 1024  # one JSON request, base64 included
INLINE_MAX_BYTES = 3 * 1024 * 1024  # a file this large or larger needs an upload session
ATTACHMENT_MAX_BYTES = 150 * 1024 * 1024
# Ranges are multiples of 320 KiB (what Microsoft's upload tasks use) and under the 4 MB per PUT
# that the Outlook upload documentation asks for.
RANGE_BYTES = 10 * 320 * 1024

Progress = Callable[[str, int, int], None]  # file name, bytes sent, file size


@dataclass(frozen=True)
class LocalFile:
    """A file to attach: where it is, the name and type it gets, and its size."""

    path: Path
    name: str
    content_type: str
    size: int

    @classmethod
    def open(cls, path: str | Path) -> "LocalFile":
        """Check the file exists, is readable and within Graph's 150 MB (ConfigError naming it otherwise)."""
        file = Path(path)
        try:
            size = file.stat().st_size
            with file.open("rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"cannot read attachment {str(path)!r}: {exc.strerror}") from exc
        if not file.is_file():
            raise ConfigError(f"attachment {str(path)!r} is not a file")
        if size > ATTACHMENT_MAX_BYTES:
            raise ConfigError(f"attachment {str(path)!r} is {size:,} bytes; Graph attaches at most "
                              f"{ATTACHMENT_MAX_BYTES:,} bytes (150 MB) per file")
        return cls(file, file.name, mimetypes.guess_type(file.name)[0] or "application/octet-stream", size)

    def resource(self) -> dict[str, Any]:
        """The Graph ``fileAttachment`` with the content inline (for small files only)."""
        return {"@odata.type": "#microsoft.graph.fileAttachment", "name": self.name, "contentType": self.content_type,
                "contentBytes": base64.b64encode(self.path.read_bytes()).decode()}


def send_files(client: GraphClient, sender: str, to: Sequence[str], subject: str, body: str, *,
               files: Sequence[LocalFile] = (), content_type: str = "Text", cc: Sequence[str] = (),
               bcc: Sequence[str] = (), progress: Progress | None = None) -> str:
    """Send a new message from ``sender`` with ``files`` attached; "sendMail" or "draft" (how it went)."""
    message: dict[str, Any] = {"subject": subject, "body": {"contentType": content_type, "content": body},
                               "toRecipients": recipients(to)}
    if cc:
        message["ccRecipients"] = recipients(cc)
    if bcc:
        message["bccRecipients"] = recipients(bcc)
    encoded = sum(4 * ((f.size + 2) // 3) for f in files)
    if encoded + len(subject) + len(body) + 64 * 1024 < SENDMAIL_MAX_BYTES:
        if files:
            message["attachments"] = [f.resource() for f in files]
        client.post(f"{user_path(sender)}/sendMail", json={"message": message, "saveToSentItems": True})
        return "sendMail"
    draft = client.post(f"{user_path(sender)}/messages", json=message).json()["id"]
    try:
        for file in files:
            attach(client, sender, draft, file, progress=progress)
        client.post(f"{message_path(sender, draft)}/send")
    except BaseException:
        _discard(client, sender, draft)
        raise
    return "draft"


def attach(client: GraphClient, mailbox: str, message_id: str, file: LocalFile, *,
           progress: Progress | None = None) -> None:
    """Attach ``file`` to a draft: one POST under 3 MB, else an upload session."""
    if file.size < INLINE_MAX_BYTES:
        client.post(f"{message_path(mailbox, message_id)}/attachments", json=file.resource())
        if progress:
            progress(file.name, file.size, file.size)
        return
    session = client.post(f"{message_path(mailbox, message_id)}/attachments/createUploadSession", json={
        "AttachmentItem": {"attachmentType": "file", "name": file.name, "size": file.size,
                           "contentType": file.content_type}}).json()
    upload(client, session["uploadUrl"], file, mailbox=mailbox, progress=progress)


def upload(client: GraphClient, url: str, file: LocalFile, *, mailbox: str, progress: Progress | None = None) -> None:
    """PUT ``file`` to an upload session's URL in ranges, in order, resuming where Graph says it is.

    The URL carries its own credential (never logged: errors quote it without the query string).
    Throttling and connection failures are retried by the client, the range sent again; a range
    Graph did not expect (416) continues from its ``nextExpectedRanges``.
    """
    offset = 0
    with file.path.open("rb") as data:
        while True:
            data.seek(offset)
            chunk = data.read(RANGE_BYTES)
            if not chunk:
                raise GraphError(0, "UploadIncomplete", f"{file.name}: the upload ended at byte {offset:,} of "
                                 f"{file.size:,} without Graph accepting the file")
            end = offset + len(chunk) - 1
            try:
                response = client.upload_range(url, chunk, f"bytes {offset}-{end}/{file.size}", mailbox=mailbox)
            except GraphError as exc:
                resume = _next_expected(getattr(exc, "body", None)) if exc.status == 416 else None
                if resume is None or resume == offset:
                    raise GraphError(exc.status, exc.code, f"{file.name}: upload failed at byte {offset:,} of "
                                     f"{file.size:,}: {exc.graph_message or exc.code}", method=exc.method, url=exc.url) from exc
                log.info("upload of %s: Graph expects byte %d next, not %d", file.name, resume, offset)
                offset = resume
                continue
            if progress:
                progress(file.name, end + 1, file.size)
            if response.status_code == 201:  # the last range: the attachment exists now
                return
            resume = _next_expected(response.json())
            offset = end + 1 if resume is None else resume


def _next_expected(body: Any) -> int | None:
    """The first byte Graph expects, from ``nextExpectedRanges`` (``["2097152"]`` or ``["0-"]``)."""
    if not isinstance(body, dict):
        return None
    ranges = body.get("nextExpectedRanges")
    if ranges is None and isinstance(body.get("error"), dict):
        ranges = body["error"].get("nextExpectedRanges")
    try:
        return int(str(ranges[0]).split("-")[0])
    except (TypeError, ValueError, IndexError, KeyError):
        return None


def _discard(client: GraphClient, mailbox: str, draft: str) -> None:
    try:
        client.delete(message_path(mailbox, draft))
    except GraphError as exc:
        log.warning("could not delete the unsent draft %s from %s: %s", draft[:32], mailbox, exc)
