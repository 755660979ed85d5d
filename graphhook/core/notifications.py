"""Notification collections, parsed by pure code into typed values.

Shapes from https://learn.microsoft.com/graph/api/resources/changenotification
and graph-protocol.md §2–§4. No Flask, Redis or HTTP here: bytes in,
values or a :class:`~graphhook.core.errors.NotificationError` out.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from graphhook.core.errors import MalformedNotification, TooManyNotifications

CHANGE_TYPES = frozenset({"created", "updated", "deleted"})
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})
# Nesting of a POST body: Graph's is 4 deep (body, "value", item, resourceData/encryptedContent). A bound far
# above that keeps a 500-deep resourceData from reaching the job serializer (RecursionError → 500).
MAX_DEPTH = 32
# JSON values per notification, counted as the commas and opening brackets of a body (strings included): a Graph
# item has 10-25 (ids, dates, base64, https://learn.microsoft.com/graph/api/resources/changenotification). Bounding
# them before the parse bounds its CPU: a 4 MiB body of 1.4 million "{}" costs a second to parse, 90,000 small
# items 35 ms, and in a gevent worker that parse holds every other connection of the process (issue 17).
VALUES_PER_ITEM = 64

# Users/{id}/Messages/{id}, users('{id}')/messages('{id}'), users/{id}@{tenant}/messages/{id}
_RESOURCE_RE = re.compile(
    r"^/?users(?:/(?P<u1>[^/()']+)|\('(?P<u2>[^']+)'\))"
    r"(?:/mailFolders(?:/[^/]+|\('[^']+'\)))?"
    r"/messages(?:/(?P<m1>[^/()']+)|\('(?P<m2>[^']+)'\))$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class MessageRef:
    """Which message a notification is about: the user (GUID or address) and Graph message id."""

    user_id: str
    message_id: str

    @classmethod
    def from_resource(cls, resource: str) -> "MessageRef":
        match = _RESOURCE_RE.match(resource)
        if not match:
            raise MalformedNotification(f"resource is not a message path: {resource[:200]!r}")
        user = match.group("u1") or match.group("u2")
        user = user.split("@")[0] if re.match(r"^[0-9a-f-]{36}@", user, re.I) else user
        return cls(user, match.group("m1") or match.group("m2"))

    def is_user(self, user_id: str) -> bool:
        """Whether this message's mailbox is ``user_id``: ids compared as ids (GUID case and braces ignored)."""
        return bool(user_id) and same_user(self.user_id, user_id)


def same_user(a: str, b: str) -> bool:
    """Two Graph user ids name the same user: GUIDs compared as UUIDs, anything else case-insensitively."""
    return _user_key(a) == _user_key(b)


def _user_key(user_id: str) -> str:
    text = user_id.strip()
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text.casefold()


@dataclass(frozen=True)
class Notification:
    """One item of a ``{"value": [...]}`` collection: a change or a lifecycle event."""

    subscription_id: str
    tenant_id: str
    client_state: str | None = field(repr=False)
    change_type: str | None = None
    lifecycle_event: str | None = None
    resource: str | None = None
    resource_data: dict[str, Any] | None = None
    encrypted_content: dict[str, Any] | None = None
    subscription_expiration: str | None = None
    id: str | None = None

    @classmethod
    def from_graph(cls, item: Any) -> "Notification":
        """Validate one raw item; raise MalformedNotification quoting what is wrong."""
        if not isinstance(item, dict):
            raise MalformedNotification(f"notification must be an object, got {type(item).__name__}")
        sid = item.get("subscriptionId")
        if not isinstance(sid, str) or not sid:
            raise MalformedNotification("notification has no subscriptionId")
        tenant = item.get("tenantId")
        if not isinstance(tenant, str) or not tenant:
            raise MalformedNotification(f"notification for subscription {sid[:64]!r} has no tenantId")
        change, event = item.get("changeType"), item.get("lifecycleEvent")
        if change is not None and event is not None:
            raise MalformedNotification("changeType and lifecycleEvent never appear together")
        if change is None and event is None:
            raise MalformedNotification("notification has neither changeType nor lifecycleEvent")
        if change is not None and (not isinstance(change, str) or change not in CHANGE_TYPES):
            raise MalformedNotification(f"unknown changeType {str(change)[:32]!r}")
        if event is not None and (not isinstance(event, str) or event not in LIFECYCLE_EVENTS):
            raise MalformedNotification(f"unknown lifecycleEvent {str(event)[:32]!r}")
        client_state = item.get("clientState")
        if client_state is not None and not isinstance(client_state, str):
            raise MalformedNotification("clientState must be a string")
        resource = item.get("resource")
        if change is not None and not isinstance(resource, str):
            raise MalformedNotification("change notification has no resource")
        resource_data = item.get("resourceData")
        if resource_data is not None and not isinstance(resource_data, dict):
            raise MalformedNotification("resourceData must be an object")
        encrypted = item.get("encryptedContent")
        if encrypted is not None and not isinstance(encrypted, dict):
            raise MalformedNotification("encryptedContent must be an object")
        expiry = item.get("subscriptionExpirationDateTime")
        return cls(
            subscription_id=sid, tenant_id=tenant, client_state=client_state, change_type=change,
            lifecycle_event=event, resource=resource, resource_data=resource_data,
            encrypted_content=encrypted, subscription_expiration=expiry if isinstance(expiry, str) else None,
            id=item.get("id") if isinstance(item.get("id"), str) else None,
        )

    @property
    def is_lifecycle(self) -> bool:
        return self.lifecycle_event is not None

    def message_ref(self) -> MessageRef:
        """The message this change is about (raises MalformedNotification for other resources)."""
        return MessageRef.from_resource(self.resource or "")

    def to_job(self) -> dict[str, Any]:
        """Plain data for the worker; the clientState stays behind (already checked, and secret)."""
        data: dict[str, Any] = {"subscriptionId": self.subscription_id, "tenantId": self.tenant_id}
        for key, value in (("changeType", self.change_type), ("lifecycleEvent", self.lifecycle_event),
                           ("resource", self.resource), ("resourceData", self.resource_data),
                           ("encryptedContent", self.encrypted_content),
                           ("subscriptionExpirationDateTime", self.subscription_expiration), ("id", self.id)):
            if value is not None:
                data[key] = value
        return data


@dataclass(frozen=True)
class Collection:
    """A parsed POST body: valid notifications, per-item problems, and rich-notification validation tokens."""

    notifications: tuple[Notification, ...]
    malformed: tuple[str, ...] = ()
    validation_tokens: tuple[str, ...] = ()

    @classmethod
    def parse(cls, body: bytes, *, max_items: int | None = None, max_depth: int = MAX_DEPTH) -> "Collection":
        """Parse a POST body; raise MalformedNotification when the body as a whole is not a collection.

        A bad item does not spoil its neighbours: it is listed in ``malformed``
        and the valid items are kept. A body with more than ``max_items`` items raises
        TooManyNotifications before any item is looked at, and one with more JSON values than
        ``max_items`` items of VALUES_PER_ITEM before it is parsed; one nested deeper than
        ``max_depth`` raises MalformedNotification, so what a hostile POST costs is bounded.
        """
        if max_items is not None:  # before the parse: its cost grows with the number of values, not of bytes
            values = _count_values(body, over=(max_items + 1) * VALUES_PER_ITEM)  # + the collection's own values
            if values > (max_items + 1) * VALUES_PER_ITEM:
                raise TooManyNotifications(f"too many JSON values ({values:,} commas and brackets); at most {max_items} "
                                           f"notifications of at most {VALUES_PER_ITEM} values each are accepted")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedNotification(f"body is not JSON: {exc}") from exc
        except RecursionError as exc:  # "[[[[…" nested deeper than the parser allows
            raise MalformedNotification("body is nested too deeply") from exc
        if not isinstance(data, dict) or not isinstance(data.get("value"), list):
            raise MalformedNotification('body must be an object with a "value" array')
        if not data["value"]:
            raise MalformedNotification('"value" is empty')
        if max_items is not None and len(data["value"]) > max_items:
            raise TooManyNotifications(f"{len(data['value'])} notifications in one POST; at most {max_items} are accepted")
        if _depth_exceeds(data, max_depth):
            raise MalformedNotification(f"body is nested more than {max_depth} levels deep")
        tokens = dict.fromkeys(_tokens(data))  # ordered set: a POST may repeat a token on every item
        good: list[Notification] = []
        bad: list[str] = []
        for item in data["value"]:
            try:
                # Graph puts validationTokens beside "value"; tokens found on an item are collected
                # too, so that no token anywhere in a POST escapes validation.
                if isinstance(item, dict) and "validationTokens" in item:
                    tokens.update(dict.fromkeys(_tokens(item)))
                good.append(Notification.from_graph(item))
            except MalformedNotification as exc:
                bad.append(str(exc))
        return cls(tuple(good), tuple(bad), tuple(tokens))


def _count_values(body: bytes | str, *, over: int) -> int:
    """An upper bound of the JSON values in ``body`` past the first: its commas and ``[``/``{``, strings included.

    ``bytes.count`` runs at memory speed (~0.3 ms per MiB); telling what is inside a string
    would take a scan of every byte in Python. Graph's strings are ids, dates and base64,
    without commas or brackets, so in its bodies nothing inside a string is counted. The
    commas alone are returned when they are already ``over`` the bound (one pass, not three).
    """
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    commas = raw.count(b",")
    return commas if commas > over else commas + raw.count(b"[") + raw.count(b"{")


def _depth_exceeds(data: Any, limit: int) -> bool:
    """Whether JSON ``data`` nests containers more than ``limit`` deep (level by level: no recursion to exhaust)."""
    level = [data] if isinstance(data, (dict, list)) else []
    for _ in range(limit):
        deeper: list[Any] = []
        for node in level:
            deeper += [child for child in (node.values() if type(node) is dict else node)
                       if type(child) is dict or type(child) is list]
        if not deeper:
            return False
        level = deeper
    return True


def _tokens(container: dict[str, Any]) -> list[str]:
    tokens = container.get("validationTokens", [])
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise MalformedNotification("validationTokens must be an array of strings")
    return tokens


def mailbox_key(resource: Any) -> str:
    """The mailbox a message resource names, normalised (GUID form, or lower case); "" when it names none.

    Groups a POST's changes into one job per mailbox (receiver/store.py) and lets a worker share
    itself fairly between mailboxes (workers/concurrent.py).
    """
    if not isinstance(resource, str):
        return ""
    try:
        return _user_key(MessageRef.from_resource(resource).user_id)
    except MalformedNotification:
        return ""
