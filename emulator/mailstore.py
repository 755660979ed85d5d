"""In-memory users, mail folders and messages, shaped like Microsoft Graph's resources.

Property names follow the Graph ``message`` resource
(https://learn.microsoft.com/graph/api/resources/message) so that the
worker code reads exactly what it would read from Microsoft.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

# Graph's well-known folder names (https://learn.microsoft.com/graph/api/resources/mailfolder)
WELL_KNOWN_FOLDERS = {
    "inbox": "Inbox",
    "drafts": "Drafts",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
    "archive": "Archive",
    "outbox": "Outbox",
    "recoverableitemsdeletions": "Recoverable Items Deletions",
}


def graph_id(prefix: str = "AAMk") -> str:
    """An opaque id in the style of Outlook REST ids (URL-safe base64, padded)."""
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(45)).decode()


def isoformat(moment: dt.datetime) -> str:
    """Graph's UTC timestamp format: ``2016-03-19T22:11:09Z``."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class NotFound(KeyError):
    """The user, folder, message or attachment does not exist."""


@dataclass
class Folder:
    id: str
    display_name: str
    parent_id: str | None
    well_known: str | None = None
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_graph(self, user: "User") -> dict[str, Any]:
        children = [f for f in user.folders.values() if f.parent_id == self.id]
        return {
            "id": self.id,
            "displayName": self.display_name,
            "parentFolderId": self.parent_id,
            "childFolderCount": len(children),
            "totalItemCount": len(self.messages),
            "unreadItemCount": sum(1 for m in self.messages.values() if not m["isRead"]),
        }


@dataclass
class User:
    id: str
    mail: str
    display_name: str
    folders: dict[str, Folder] = field(default_factory=dict)

    def to_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "displayName": self.display_name,
            "mail": self.mail,
            "userPrincipalName": self.mail,
        }

    def folder(self, ref: str) -> Folder:
        """A folder by id, well-known name or (top-level) display name."""
        if ref in self.folders:
            return self.folders[ref]
        low = ref.lower()
        for f in self.folders.values():
            if f.well_known == low:
                return f
        for f in self.folders.values():
            if f.display_name.lower() == low and f.parent_id == self.root_id:
                return f
        raise NotFound(f"folder {ref!r}")

    @property
    def root_id(self) -> str:
        return next(f.id for f in self.folders.values() if f.well_known == "msgfolderroot")

    def find_message(self, message_id: str) -> tuple[Folder, dict[str, Any]]:
        for f in self.folders.values():
            if message_id in f.messages:
                return f, f.messages[message_id]
        raise NotFound(f"message {message_id!r}")


def _recipient(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        if "emailAddress" in value:
            return value
        return {"emailAddress": {"name": value.get("name", value["address"]), "address": value["address"]}}
    return {"emailAddress": {"name": str(value), "address": str(value)}}


def make_attachment(spec: dict[str, Any]) -> dict[str, Any]:
    """Build a Graph attachment from a short spec (``kind`` file/item/reference)."""
    kind = spec.get("kind", "file")
    base = {
        "id": graph_id("AAMkATT"),
        "lastModifiedDateTime": isoformat(dt.datetime.now(dt.timezone.utc)),
        "name": spec["name"],
        "isInline": bool(spec.get("isInline", False)),
    }
    if kind == "file":
        content: bytes = spec["content"] if isinstance(spec["content"], bytes) else spec["content"].encode()
        base.update({
            "@odata.type": "#microsoft.graph.fileAttachment",
            "contentType": spec.get("contentType", "application/octet-stream"),
            "size": len(content),
            "contentId": spec.get("contentId"),
            "contentLocation": None,
            "contentBytes": base64.b64encode(content).decode(),
        })
    elif kind == "item":
        base.update({
            "@odata.type": "#microsoft.graph.itemAttachment",
            "contentType": None,
            "size": 0,
            "item": build_message(spec["item"]),
        })
    elif kind == "reference":
        base.update({
            "@odata.type": "#microsoft.graph.referenceAttachment",
            "contentType": spec.get("contentType"),
            "size": 0,
            "sourceUrl": spec.get("sourceUrl"),
            "providerType": spec.get("providerType", "oneDriveBusiness"),
        })
    else:
        raise ValueError(f"unknown attachment kind {kind!r}")
    return base


def build_message(spec: dict[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
    """Turn a short message spec into a full Graph message resource."""
    now = now or dt.datetime.now(dt.timezone.utc)
    sender = _recipient(spec.get("from", "sender@example.com"))
    body_html = spec.get("html")
    body_text = spec.get("body", "")
    body = {"contentType": "html", "content": body_html} if body_html else {"contentType": "text", "content": body_text}
    preview_source = body_text or (body_html or "")
    headers = [{"name": k, "value": v} for k, v in spec.get("headers", {}).items()]
    message_id = spec.get("internetMessageId") or f"<{uuid.uuid4().hex}@{sender['emailAddress']['address'].split('@')[-1]}>"
    attachments = [make_attachment(a) for a in spec.get("attachments", [])]
    received = spec.get("receivedDateTime") or isoformat(now)
    return {
        "id": graph_id(),
        "createdDateTime": received,
        "lastModifiedDateTime": received,
        "changeKey": base64.b64encode(secrets.token_bytes(12)).decode(),
        "categories": list(spec.get("categories", [])),
        "receivedDateTime": received,
        "sentDateTime": spec.get("sentDateTime", received),
        "hasAttachments": any(not a["isInline"] for a in attachments),
        "internetMessageId": message_id,
        "subject": spec.get("subject", ""),
        "bodyPreview": " ".join(preview_source.split())[:255],
        "importance": spec.get("importance", "normal"),
        "parentFolderId": None,
        "conversationId": "AAQk" + hashlib.sha1(spec.get("subject", "").encode()).hexdigest(),
        "isDeliveryReceiptRequested": False,
        "isReadReceiptRequested": False,
        "isRead": bool(spec.get("isRead", False)),
        "isDraft": False,
        "webLink": "https://outlook.office365.com/owa/?ItemID=" + uuid.uuid4().hex,
        "inferenceClassification": "focused",
        "body": body,
        "sender": sender,
        "from": sender,
        "toRecipients": [_recipient(r) for r in spec.get("to", [])],
        "ccRecipients": [_recipient(r) for r in spec.get("cc", [])],
        "bccRecipients": [_recipient(r) for r in spec.get("bcc", [])],
        "replyTo": [_recipient(r) for r in spec.get("replyTo", [])],
        "flag": {"flagStatus": "notFlagged"},
        "internetMessageHeaders": headers,
        "attachments": attachments,
    }


class MailStore:
    """Users and their mailboxes; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.users: dict[str, User] = {}

    def add_user(self, address: str, display_name: str | None = None, user_id: str | None = None) -> User:
        """Create a user with Outlook's default folders; idempotent on the address."""
        with self.lock:
            try:
                return self.user(address)
            except NotFound:
                pass
            user = User(id=user_id or str(uuid.uuid4()), mail=address, display_name=display_name or address.split("@")[0])
            root = Folder(graph_id("AAMkFLD"), "Top of Information Store", None, "msgfolderroot")
            user.folders[root.id] = root
            for wk, name in WELL_KNOWN_FOLDERS.items():
                f = Folder(graph_id("AAMkFLD"), name, root.id, wk)
                user.folders[f.id] = f
            self.users[user.id] = user
            return user

    def user(self, ref: str) -> User:
        """A user by GUID or by address (case-insensitive), as Graph accepts both."""
        with self.lock:
            if ref in self.users:
                return self.users[ref]
            low = ref.lower()
            for u in self.users.values():
                if u.mail.lower() == low or u.id.lower() == low:
                    return u
        raise NotFound(f"user {ref!r}")

    def add_message(self, user_ref: str, spec: dict[str, Any], folder: str = "inbox") -> tuple[User, Folder, dict[str, Any]]:
        """Store a new message built from ``spec``; return where it landed."""
        with self.lock:
            user = self.user(user_ref)
            target = user.folder(folder)
            message = build_message(spec)
            message["parentFolderId"] = target.id
            if not message["toRecipients"]:
                message["toRecipients"] = [_recipient({"address": user.mail, "name": user.display_name})]
            target.messages[message["id"]] = message
            return user, target, message


def select(resource: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """Apply ``$select`` (case-insensitive, as Graph does); ``id`` is always returned."""
    if not fields:
        out = {k: v for k, v in resource.items() if k != "attachments"}
    else:
        wanted = {f.strip().lower() for f in fields if f.strip()} | {"id"}
        out = {k: v for k, v in resource.items() if k.lower() in wanted and k != "attachments"}
    return copy.deepcopy(out)
