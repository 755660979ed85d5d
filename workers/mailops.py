"""Mailbox operations on Microsoft Graph: the one implementation used by rule actions, handlers, the CLI and purge.

Every function takes a :class:`workers.graph.GraphClient`, a mailbox (address or
user id) and a message id, and returns what a caller needs next (a moved
message's new id, a folder id). None of them keeps state besides a small
folder-id cache. Graph references are linked on each function.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable, Sequence
from urllib.parse import quote

from receiver.errors import GraphError, NotFoundError

from .graph import GraphClient

# Well-known folder names usable directly as ids
# (https://learn.microsoft.com/graph/api/resources/mailfolder#well-known-folder-names).
WELL_KNOWN = {
    "inbox": "inbox", "drafts": "drafts", "sentitems": "sentitems", "sent items": "sentitems",
    "deleteditems": "deleteditems", "deleted items": "deleteditems", "junkemail": "junkemail",
    "junk email": "junkemail", "archive": "archive", "outbox": "outbox", "msgfolderroot": "msgfolderroot",
    "recoverableitemsdeletions": "recoverableitemsdeletions",
}
DELETE_MODES = ("soft", "hard", "purge")
FLAG_STATUSES = ("flagged", "complete", "notFlagged")

_folder_cache: dict[tuple[str, str, str], str] = {}
_cache_lock = threading.Lock()


def user_path(mailbox: str) -> str:
    """``users/{mailbox}`` with the mailbox escaped for the URL path."""
    return f"users/{quote(mailbox, safe='@')}"


def message_path(mailbox: str, message_id: str) -> str:
    """``users/{mailbox}/messages/{id}`` (ids may contain ``/`` and ``+``, so they are escaped)."""
    return f"{user_path(mailbox)}/messages/{quote(message_id, safe='')}"


def recipients(addresses: Iterable[str]) -> list[dict[str, Any]]:
    """Graph's recipient collection shape."""
    return [{"emailAddress": {"address": a}} for a in addresses]


# --- folders -------------------------------------------------------------------------------------

def _children(client: GraphClient, mailbox: str, parent_id: str | None) -> Iterable[dict[str, Any]]:
    """Top-level folders (https://learn.microsoft.com/graph/api/user-list-mailfolders) or child folders
    (https://learn.microsoft.com/graph/api/mailfolder-list-childfolders)."""
    base = f"{user_path(mailbox)}/mailFolders"
    path = base if parent_id is None else f"{base}/{quote(parent_id, safe='')}/childFolders"
    return client.paged(path, params={"$select": "id,displayName", "$top": "100"})


def _create(client: GraphClient, mailbox: str, parent_id: str | None, name: str) -> str:
    """Create a folder (https://learn.microsoft.com/graph/api/user-post-mailfolders,
    https://learn.microsoft.com/graph/api/mailfolder-post-childfolders); 201 with the folder."""
    base = f"{user_path(mailbox)}/mailFolders"
    path = base if parent_id is None else f"{base}/{quote(parent_id, safe='')}/childFolders"
    return client.post(path, json={"displayName": name}).json()["id"]


def resolve_folder(client: GraphClient, mailbox: str, folder: str, *, create: bool = False) -> str:
    """The id of folder ``folder`` — a well-known name, a top-level display name, or a path such as
    ``Inbox/Phish`` — creating missing folders when ``create``; NotFoundError otherwise."""
    key = (mailbox.lower(), folder.strip("/").lower(), client.base_url)
    with _cache_lock:
        if key in _folder_cache:
            return _folder_cache[key]
    parts = [p.strip() for p in folder.strip("/").split("/") if p.strip()]
    if not parts:
        raise ValueError(f"empty folder path {folder!r}")
    parent: str | None = None
    for i, part in enumerate(parts):
        if i == 0 and part.lower() in WELL_KNOWN:
            parent = WELL_KNOWN[part.lower()]
            continue
        found = next((f["id"] for f in _children(client, mailbox, parent)
                      if str(f.get("displayName", "")).lower() == part.lower()), None)
        if found is None:
            if not create:
                raise NotFoundError(404, "ErrorFolderNotFound", f"folder {'/'.join(parts[:i + 1])!r} does not exist",
                                    method="GET", url=f"{user_path(mailbox)}/mailFolders")
            try:
                found = _create(client, mailbox, parent, part)
            except GraphError as exc:
                if exc.status != 409:  # ErrorFolderExists: another worker created it first
                    raise
                found = next(f["id"] for f in _children(client, mailbox, parent)
                             if str(f.get("displayName", "")).lower() == part.lower())
        parent = found
    assert parent is not None
    with _cache_lock:
        _folder_cache[key] = parent
    return parent


def forget_folders() -> None:
    """Drop cached folder ids (a folder was deleted, or tests reset the emulator)."""
    with _cache_lock:
        _folder_cache.clear()


# --- message operations -------------------------------------------------------------------------

def _to_folder(client: GraphClient, verb: str, mailbox: str, message_id: str, folder: str, create: bool) -> str:
    destination = resolve_folder(client, mailbox, folder, create=create)
    try:
        response = client.post(f"{message_path(mailbox, message_id)}/{verb}", json={"destinationId": destination})
    except NotFoundError:
        # Graph says ErrorItemNotFound for a missing message and for a missing destination alike. The cached
        # folder may have been deleted by the user: look it up (or create it) again and retry once.
        if destination in WELL_KNOWN.values():
            raise
        forget_folders()
        destination = resolve_folder(client, mailbox, folder, create=create)
        response = client.post(f"{message_path(mailbox, message_id)}/{verb}", json={"destinationId": destination})
    return response.json()["id"]


def move(client: GraphClient, mailbox: str, message_id: str, folder: str, *, create: bool = True) -> str:
    """Move a message; return its new id (https://learn.microsoft.com/graph/api/message-move, 201)."""
    return _to_folder(client, "move", mailbox, message_id, folder, create)


def copy(client: GraphClient, mailbox: str, message_id: str, folder: str, *, create: bool = True) -> str:
    """Copy a message; return the copy's id (https://learn.microsoft.com/graph/api/message-copy, 201)."""
    return _to_folder(client, "copy", mailbox, message_id, folder, create)


def forward(client: GraphClient, mailbox: str, message_id: str, to: Sequence[str], comment: str = "") -> None:
    """Forward with a comment (https://learn.microsoft.com/graph/api/message-forward, 202)."""
    client.post(f"{message_path(mailbox, message_id)}/forward", json={"comment": comment, "toRecipients": recipients(to)})


def reply(client: GraphClient, mailbox: str, message_id: str, comment: str, *, reply_all: bool = False) -> None:
    """Reply (or reply-all) with a comment (https://learn.microsoft.com/graph/api/message-reply, 202)."""
    verb = "replyAll" if reply_all else "reply"
    client.post(f"{message_path(mailbox, message_id)}/{verb}", json={"comment": comment})


def delete(client: GraphClient, mailbox: str, message_id: str, *, mode: str = "soft") -> str | None:
    """Delete a message. ``soft`` moves it to Deleted Items (returns the new id); ``hard`` is Graph's DELETE
    (to Recoverable Items, out of the user's sight; https://learn.microsoft.com/graph/api/message-delete);
    ``purge`` is permanentDelete (https://learn.microsoft.com/graph/api/message-permanentdelete).
    A message that is already gone counts as deleted for ``hard`` and ``purge``."""
    if mode not in DELETE_MODES:
        raise ValueError(f"delete mode must be one of {DELETE_MODES}, got {mode!r}")
    if mode == "soft":
        return move(client, mailbox, message_id, "deleteditems", create=False)
    try:
        if mode == "hard":
            client.delete(message_path(mailbox, message_id))
        else:
            client.post(f"{message_path(mailbox, message_id)}/permanentDelete")
    except NotFoundError:
        pass
    return None


def update(client: GraphClient, mailbox: str, message_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """PATCH message properties (https://learn.microsoft.com/graph/api/message-update, 200)."""
    return client.patch(message_path(mailbox, message_id), json=changes).json()


def mark_read(client: GraphClient, mailbox: str, message_id: str, read: bool = True) -> None:
    """Mark a message read or unread."""
    update(client, mailbox, message_id, {"isRead": bool(read)})


def categorise(client: GraphClient, mailbox: str, message_id: str, categories: Sequence[str], *,
               replace: bool = False) -> list[str]:
    """Add (or with ``replace`` set) categories; returns the message's categories afterwards."""
    wanted = list(categories)
    if not replace:
        current = client.get(message_path(mailbox, message_id), params={"$select": "categories"}).get("categories") or []
        wanted = list(current) + [c for c in wanted if c not in current]
    return update(client, mailbox, message_id, {"categories": wanted}).get("categories", wanted)


def flag(client: GraphClient, mailbox: str, message_id: str, status: str = "flagged") -> None:
    """Set the follow-up flag (https://learn.microsoft.com/graph/api/resources/followupflag)."""
    if status not in FLAG_STATUSES:
        raise ValueError(f"flag status must be one of {FLAG_STATUSES}, got {status!r}")
    update(client, mailbox, message_id, {"flag": {"flagStatus": status}})


def send_mail(client: GraphClient, sender: str, to: Sequence[str], subject: str, body: str, *,
              content_type: str = "Text", cc: Sequence[str] = (), save_to_sent: bool = True,
              attachments: Sequence[dict[str, Any]] = ()) -> None:
    """Send a new message from mailbox ``sender`` (https://learn.microsoft.com/graph/api/user-sendmail, 202).

    ``attachments`` are Graph attachment resources (``#microsoft.graph.fileAttachment`` with
    ``contentBytes``); the whole request must stay under Graph's 4 MB."""
    message: dict[str, Any] = {"subject": subject, "body": {"contentType": content_type, "content": body},
                               "toRecipients": recipients(to)}
    if cc:
        message["ccRecipients"] = recipients(cc)
    if attachments:
        message["attachments"] = list(attachments)
    client.post(f"{user_path(sender)}/sendMail", json={"message": message, "saveToSentItems": save_to_sent})


def find_by_internet_message_id(client: GraphClient, mailbox: str, internet_message_id: str, *,
                                folder: str | None = None) -> list[dict[str, Any]]:
    """Messages of a mailbox (or one folder) with this Internet Message-ID: ``[{id, parentFolderId}]``."""
    from .search import MessageQuery, iter_messages  # the one message-listing implementation (it imports this module)

    query = MessageQuery(internet_message_id=internet_message_id)
    return [{"id": m["id"], "parentFolderId": m.get("parentFolderId"), "internetMessageId": m.get("internetMessageId")}
            for m in iter_messages(client, mailbox, query, folder=folder, select=("id", "parentFolderId"))]
