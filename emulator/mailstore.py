"""In-memory users, mail folders and messages, shaped like Microsoft Graph's resources.

Property names follow the Graph ``message`` resource
(https://learn.microsoft.com/graph/api/resources/message) so that the
worker code reads exactly what it would read from Microsoft.

Keys that start with ``_`` are the emulator's own bookkeeping and never
serialized: ``_immutableId`` (the id that survives moves, served when the
client sends ``Prefer: IdType="ImmutableId"``) and ``_seq`` (the store-wide
change counter that delta queries compare against). A message removed from a
folder leaves a tombstone there so delta can report ``@removed``.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from .resources import MESSAGE_PROPERTIES, SELECT_ONLY, _recipient, build_message, graph_id, isoformat, make_attachment

__all__ = ["MESSAGE_PROPERTIES", "build_message", "make_attachment", "graph_id", "isoformat", "MailStore", "User",
           "Folder", "NotFound", "Conflict", "select", "select_message"]

# Graph's well-known folder names (https://learn.microsoft.com/graph/api/resources/mailfolder)
WELL_KNOWN_FOLDERS = {
    "inbox": "Inbox",
    "drafts": "Drafts",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
    "archive": "Archive",
    "outbox": "Outbox",
    "conversationhistory": "Conversation History",
}
# Outside the visible folder tree: where DELETE puts a message (a soft delete into the
# Recoverable Items "Deletions" folder), and the "Purges" folder of permanentDelete.
RECOVERABLE = "recoverableitemsdeletions"
PURGES = "recoverableitemspurges"


class NotFound(KeyError):
    """The user, folder, message or attachment does not exist."""


class Conflict(ValueError):
    """The folder to create already exists under that parent."""


@dataclass
class Folder:
    """A mail folder; ``removed`` holds tombstones ``{regular id: (seq, immutable id)}`` for delta."""

    id: str
    display_name: str
    parent_id: str | None
    well_known: str | None = None
    hidden: bool = False
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed: dict[str, tuple[int, str]] = field(default_factory=dict)

    def to_graph(self, user: "User") -> dict[str, Any]:
        """The ``mailFolder`` resource."""
        return {
            "id": self.id,
            "displayName": self.display_name,
            "parentFolderId": self.parent_id,
            "childFolderCount": sum(1 for f in user.folders.values() if f.parent_id == self.id and not f.hidden),
            "unreadItemCount": sum(1 for m in self.messages.values() if not m["isRead"]),
            "totalItemCount": len(self.messages),
            "sizeInBytes": sum(len(m["body"]["content"]) for m in self.messages.values()),
            "isHidden": self.hidden,
        }


@dataclass
class User:
    """A mailbox owner with Outlook's default folders, in one tenant."""

    id: str
    mail: str
    display_name: str
    tenant_id: str = ""
    folders: dict[str, Folder] = field(default_factory=dict)
    # any message id (regular or immutable) -> (folder id, regular id)
    index: dict[str, tuple[str, str]] = field(default_factory=dict)

    def to_graph(self) -> dict[str, Any]:
        """The ``user`` resource (the properties Graph returns by default)."""
        given, _, surname = self.display_name.partition(" ")
        return {
            "businessPhones": [],
            "displayName": self.display_name,
            "givenName": given or None,
            "jobTitle": None,
            "mail": self.mail,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": "en-US",
            "surname": surname or None,
            "userPrincipalName": self.mail,
            "id": self.id,
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

    def children(self, parent_id: str, include_hidden: bool = False) -> list[Folder]:
        return [f for f in self.folders.values() if f.parent_id == parent_id and (include_hidden or not f.hidden)]

    def find_message(self, message_id: str) -> tuple[Folder, dict[str, Any]]:
        """The folder and message for a regular or immutable id (purged messages are gone)."""
        try:
            folder_id, regular = self.index[message_id]
        except KeyError:
            raise NotFound(f"message {message_id!r}") from None
        folder = self.folders[folder_id]
        return folder, folder.messages[regular]

    def visible_messages(self) -> list[dict[str, Any]]:
        """Messages in every mail folder (``/users/{id}/messages``): not Recoverable Items."""
        return [m for f in self.folders.values() if not f.hidden for m in f.messages.values()]


class MailStore:
    """Users and their mailboxes; every mutation goes through here under one lock."""

    def __init__(self, now: Callable[[], dt.datetime] | None = None, tenant_id: str = "") -> None:
        self.lock = threading.RLock()
        self.tenant_id = tenant_id  # the tenant of users added without one (the emulator's first tenant)
        self.users: dict[str, User] = {}
        self.purged: list[dict[str, Any]] = []  # what permanentDelete put in Purges, for assertions
        self._seq = 0
        self.now = now or (lambda: dt.datetime.now(dt.timezone.utc))

    @property
    def seq(self) -> int:
        """The latest change number handed out (delta watermarks compare against it)."""
        return self._seq

    def _next(self) -> int:
        with self.lock:
            self._seq += 1
            return self._seq

    def add_user(self, address: str, display_name: str | None = None, user_id: str | None = None,
                 tenant_id: str | None = None) -> User:
        """Create a user with Outlook's default folders in ``tenant_id``; idempotent on the address.

        An address belongs to one tenant (its domain is verified in one directory): adding it to another is a ValueError.
        """
        tenant_id = tenant_id or self.tenant_id
        with self.lock:
            try:
                user = self.user(address)
            except NotFound:
                pass
            else:
                if user.tenant_id != tenant_id:
                    raise ValueError(f"{address!r} already has a mailbox in tenant {user.tenant_id!r}, not {tenant_id!r}")
                return user
            user = User(id=user_id or str(uuid.uuid4()), mail=address, display_name=display_name or address.split("@")[0],
                        tenant_id=tenant_id)
            root = Folder(graph_id("AAMkFLD"), "Top of Information Store", None, "msgfolderroot")
            user.folders[root.id] = root
            for wk, name in WELL_KNOWN_FOLDERS.items():
                f = Folder(graph_id("AAMkFLD"), name, root.id, wk)
                user.folders[f.id] = f
            for wk, name in ((RECOVERABLE, "Deletions"), (PURGES, "Purges")):
                f = Folder(graph_id("AAMkFLD"), name, None, wk, hidden=True)
                user.folders[f.id] = f
            self.users[user.id] = user
            return user

    def user(self, ref: str, tenant: str | None = None) -> User:
        """A user by GUID or by address (case-insensitive), as Graph accepts both.

        With ``tenant``, only that tenant's users exist: Graph resolves a user in the caller's directory,
        so another tenant's mailbox is not found (the same 404 as an unknown one).
        """
        with self.lock:
            found = self.users.get(ref)
            if found is None:
                low = ref.lower()
                found = next((u for u in self.users.values() if u.mail.lower() == low or u.id.lower() == low), None)
            if found is not None and (tenant is None or self.tenant_of(found) == tenant):
                return found
        raise NotFound(f"user {ref!r}")

    def tenant_users(self, tenant: str) -> list[User]:
        """The users of one tenant."""
        with self.lock:
            return [u for u in self.users.values() if self.tenant_of(u) == tenant]

    def tenant_of(self, user: User) -> str:
        """A user's tenant; one put in ``users`` directly, without a tenant, is in the first tenant (as before)."""
        return user.tenant_id or self.tenant_id

    def add_message(self, user_ref: str, spec: dict[str, Any], folder: str = "inbox") -> tuple[User, Folder, dict[str, Any]]:
        """Store a new message built from ``spec``; return where it landed."""
        with self.lock:
            user = self.user(user_ref)
            target = user.folder(folder)
            message = build_message(spec, self.now())
            if not message["toRecipients"] and not spec.get("isDraft"):
                message["toRecipients"] = [_recipient({"address": user.mail, "name": user.display_name})]
            self.insert(user, target, message)
            return user, target, message

    def insert(self, user: User, folder: Folder, message: dict[str, Any]) -> dict[str, Any]:
        """Put ``message`` in ``folder`` as a change (new ``_seq``)."""
        with self.lock:
            message["parentFolderId"] = folder.id
            message["_seq"] = self._next()
            folder.messages[message["id"]] = message
            folder.removed.pop(message["id"], None)
            user.index[message["id"]] = user.index[message["_immutableId"]] = (folder.id, message["id"])
            return message

    def remove(self, user: User, message: dict[str, Any]) -> Folder:
        """Take ``message`` out of its folder, leaving a tombstone; return the folder it left."""
        with self.lock:
            folder = user.folders[message["parentFolderId"]]
            del folder.messages[message["id"]]
            folder.removed[message["id"]] = (self._next(), message["_immutableId"])
            user.index.pop(message["id"], None)
            user.index.pop(message["_immutableId"], None)
            return folder

    def touch(self, message: dict[str, Any]) -> None:
        """Record an update: new changeKey, lastModifiedDateTime and ``_seq``."""
        with self.lock:
            message["changeKey"] = base64.b64encode(secrets.token_bytes(12)).decode()
            message["lastModifiedDateTime"] = isoformat(self.now())
            message["_seq"] = self._next()

    def move(self, user: User, message: dict[str, Any], destination: Folder) -> tuple[Folder, dict[str, Any]]:
        """Move to ``destination``; the moved item gets a new (regular) id, its immutable id stays."""
        with self.lock:
            source = self.remove(user, message)
            moved = dict(message)
            moved["id"] = graph_id()
            moved["changeKey"] = base64.b64encode(secrets.token_bytes(12)).decode()
            moved["lastModifiedDateTime"] = isoformat(self.now())
            self.insert(user, destination, moved)
            return source, moved

    def copy(self, user: User, message: dict[str, Any], destination: Folder) -> dict[str, Any]:
        """A copy in ``destination`` with new ids (regular and immutable)."""
        with self.lock:
            clone = copy.deepcopy(message)
            clone["id"], clone["_immutableId"] = graph_id(), graph_id("AAkAL")
            clone["createdDateTime"] = clone["lastModifiedDateTime"] = isoformat(self.now())
            return self.insert(user, destination, clone)

    def purge(self, user: User, message: dict[str, Any]) -> Folder:
        """permanentDelete: out of every visible folder, into Purges (kept in ``purged``)."""
        with self.lock:
            source = self.remove(user, message)
            self.purged.append(message)
            return source

    def create_folder(self, user: User, parent: Folder, name: str, hidden: bool = False) -> Folder:
        """A child folder of ``parent``; :class:`Conflict` if a sibling has that name."""
        with self.lock:
            if any(f.display_name.lower() == name.lower() for f in user.folders.values() if f.parent_id == parent.id):
                raise Conflict(name)
            folder = Folder(graph_id("AAMkFLD"), name, parent.id, hidden=hidden)
            user.folders[folder.id] = folder
            return folder


def select(resource: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """Apply ``$select`` (case-insensitive, as Graph does); ``id`` is always returned."""
    if not fields:
        out = {k: v for k, v in resource.items() if k != "attachments" and not k.startswith("_")}
    else:
        wanted = {f.strip().lower() for f in fields if f.strip()} | {"id"}
        out = {k: v for k, v in resource.items() if k.lower() in wanted and k != "attachments" and not k.startswith("_")}
    return copy.deepcopy(out)


def select_message(message: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """``$select`` on a message: ``internetMessageHeaders`` and ``uniqueBody`` only when named.

    ``uniqueBody`` is the whole body here: the emulator does not tell a reply's own text from the quote.
    """
    out = select(message, fields)
    wanted = {f.strip().lower() for f in fields or ()}
    for name in SELECT_ONLY:
        if name.lower() not in wanted:
            out.pop(name, None)
    if "uniquebody" in wanted:
        out["uniqueBody"] = copy.deepcopy(message["body"])
    return out
