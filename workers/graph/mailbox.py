"""Addressing a mailbox on Graph: user and message paths, and folder names resolved to ids (cached).

Shared by every caller that names a mailbox or a folder: mailbox operations, search, purge, uploads.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable
from urllib.parse import quote

from graphhook.core.errors import GraphError, NotFoundError
from workers.graph.client import GraphClient

# Well-known folder names usable directly as ids
# (https://learn.microsoft.com/graph/api/resources/mailfolder#well-known-folder-names).
WELL_KNOWN = {
    "inbox": "inbox", "drafts": "drafts", "sentitems": "sentitems", "sent items": "sentitems",
    "deleteditems": "deleteditems", "deleted items": "deleteditems", "junkemail": "junkemail",
    "junk email": "junkemail", "archive": "archive", "outbox": "outbox", "msgfolderroot": "msgfolderroot",
    "recoverableitemsdeletions": "recoverableitemsdeletions",
}

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
