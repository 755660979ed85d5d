"""Mailbox operations on Microsoft Graph: the one implementation used by rule actions, handlers, the CLI and purge.

Every function takes a :class:`workers.graph.client.GraphClient`, a mailbox (address or
user id) and a message id, and returns what a caller needs next (a moved
message's new id, a folder id). None of them keeps state; paths and folder ids come from
:mod:`workers.graph.mailbox`. Graph references are linked on each function.
"""

from __future__ import annotations

from typing import Any, Sequence

from graphhook.core.errors import GraphError, NotFoundError
from workers.graph.client import GraphClient
from workers.graph.mailbox import WELL_KNOWN, forget_folders, message_path, recipients, resolve_folder, user_path
from workers.response.search import MessageQuery, iter_messages

DELETE_MODES = ("soft", "hard", "purge")
FLAG_STATUSES = ("flagged", "complete", "notFlagged")


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
    except GraphError as exc:
        # With immutable ids a hard-deleted message keeps its id in Recoverable Items, where deleting it
        # again is refused with this code (microsoftgraph/microsoft-graph-docs#2894): it is deleted already.
        if mode != "hard" or exc.code != "ErrorCannotDeleteObject":
            raise
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
    query = MessageQuery(internet_message_id=internet_message_id)
    return [{"id": m["id"], "parentFolderId": m.get("parentFolderId"), "internetMessageId": m.get("internetMessageId")}
            for m in iter_messages(client, mailbox, query, folder=folder, select=("id", "parentFolderId"))]
