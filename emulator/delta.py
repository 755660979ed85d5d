"""Delta query per mail folder: ``GET /users/{id}/mailFolders/{id}/messages/delta``.

The function-call spelling ``…/messages/delta()``, which Kiota-generated SDKs
(msgraph-sdk) send, is the same route. There is no mailbox-wide message delta:
``/users/{id}/messages/delta`` answers 400 "Change tracking is not supported
against 'microsoft.graph.message'." (observed: microsoftgraph/msgraph-sdk-python#1087).

As https://learn.microsoft.com/graph/delta-query-messages describes it
(graph-protocol.md §5):

- The first round returns the folder's messages; ``$select`` and a
  ``receivedDateTime ge|gt`` filter (at most 5,000 items) are the supported
  narrowing; ``$orderby`` may only be ``receivedDateTime desc``.
- ``Prefer: odata.maxpagesize=N`` (or ``$top``) sizes the pages; every page
  but the last carries ``@odata.nextLink`` (``…/delta?$skiptoken=…``), the
  last carries ``@odata.deltaLink`` (``…/delta?$deltatoken=…``).
- Calling the deltaLink returns what changed since: new, updated and
  moved-in messages in full, and ``{"id", "@removed": {"reason": "deleted"}}``
  for messages deleted or moved out.
- Tokens are server-side sync states in a bounded cache, as in Outlook:
  when one is evicted (``emu.evict_delta_tokens()``, or the cache is full)
  its link answers **410** ``SyncStateNotFound`` (the observed body) with a
  ``Location`` header for a full resync.
"""

from __future__ import annotations

import collections
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, jsonify, request

from . import odata
from .graphapi import (
    bad_select,
    csv_arg,
    emulator,
    find_user,
    graph_error,
    invalid_user,
    not_found_item,
    page_size,
    prefer,
    prefers_immutable,
    require_roles,
)
from .mailstore import NotFound, select_message
from .query import QueryError, parse_time
from .resources import SELECTABLE_MESSAGE

bp = Blueprint("delta", __name__, url_prefix="/v1.0/users/<user_ref>")

READ_ROLES = ("Mail.Read", "Mail.ReadWrite", "Mail.ReadBasic", "Mail.ReadBasic.All")
FILTER_CAP = 5000  # "returns at most 5,000 items" with a receivedDateTime filter
CACHE_SIZE = 10_000  # sync states kept before the oldest are evicted


@dataclass
class SyncState:
    """What a token stands for: a folder, the query's options, and where the sync has got to."""

    user_id: str
    folder_id: str
    select: list[str] | None
    since: tuple[str, Any] | None  # ("ge" | "gt", datetime)
    watermark: int  # the store's change number this round started from
    pending: list[dict[str, Any]] = field(default_factory=list)  # items still to page out
    next_watermark: int = 0  # where the next round starts once this one is paged out


class DeltaStore:
    """The sync-state cache behind ``$skiptoken`` and ``$deltatoken``."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._states: collections.OrderedDict[str, SyncState] = collections.OrderedDict()
        self._lock = threading.Lock()

    def put(self, state: SyncState) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._states[token] = state
            while len(self._states) > self.size:
                self._states.popitem(last=False)
        return token

    def get(self, token: str) -> SyncState | None:
        with self._lock:
            state = self._states.get(token)
            if state is not None:
                self._states.move_to_end(token)
            return state

    def evict(self, token: str | None = None) -> int:
        """Forget one token (from a link or bare) or, with None, all of them; return how many went."""
        with self._lock:
            if token is None:
                count = len(self._states)
                self._states.clear()
                return count
            token = token.rsplit("token=", 1)[-1]
            return 1 if self._states.pop(token, None) is not None else 0

    def __len__(self) -> int:
        return len(self._states)


def _since() -> tuple[str, Any] | None:
    text = request.args.get("$filter")
    if not text:
        return None
    words = text.split()
    if len(words) != 3 or words[0].lower() != "receiveddatetime" or words[1].lower() not in ("ge", "gt"):
        raise QueryError("ErrorInvalidUrlQueryFilter",
                         "Delta query for messages supports only $filter=receivedDateTime ge|gt {value}.")
    try:
        return words[1].lower(), parse_time(words[2])
    except ValueError:
        raise QueryError("BadRequest", f"The DateTimeOffset text '{words[2]}' is not valid.") from None


def _passes(message: dict[str, Any], since: tuple[str, Any] | None) -> bool:
    if since is None:
        return True
    received = parse_time(message["receivedDateTime"])
    return received >= since[1] if since[0] == "ge" else received > since[1]


def _removed(message_id: str) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.message", "id": message_id, "@removed": {"reason": "deleted"}}


def _round(folder: Any, state: SyncState, first: bool, immutable: bool, orderby: bool) -> list[dict[str, Any]]:
    """The items of one round: the folder's messages (first) or the changes since the watermark."""
    messages = [m for m in folder.messages.values() if (first or m["_seq"] > state.watermark) and _passes(m, state.since)]
    messages.sort(key=lambda m: m["receivedDateTime"], reverse=True) if orderby else messages.sort(key=lambda m: m["_seq"])
    if first and state.since is not None:
        messages = messages[:FILTER_CAP]
    items = []
    for message in messages:
        item = select_message(message, state.select)
        if immutable:
            item["id"] = message["_immutableId"]
        items.append(odata.delta_item(item, message))
    if not first:
        for regular, (seq, immutable_id) in folder.removed.items():
            if seq > state.watermark:
                items.append(_removed(immutable_id if immutable else regular))
    return items


def _base() -> str:
    """This delta's URL as Graph writes it in links: ``…/messages/delta``, also when called as ``delta()``."""
    return request.base_url.removesuffix("()")


def _gone():
    response, status = graph_error(410, "SyncStateNotFound",
                                   "The sync state generation is not found; a full synchronization is required.")
    response.headers["Location"] = _base()  # a new initial round, as Graph's 410 may point to
    return response, status


@bp.get("/messages/delta")
@bp.get("/messages/delta()")
@require_roles(*READ_ROLES)
def mailbox_delta(user_ref: str):
    return graph_error(400, "BadRequest",
                       "Unsupported request: Change tracking is not supported against 'microsoft.graph.message'.")


@bp.get("/mailFolders/<folder_ref>/messages/delta")
@bp.get("/mailFolders/<folder_ref>/messages/delta()")
@require_roles(*READ_ROLES)
def delta(user_ref: str, folder_ref: str):
    emu = emulator()
    store, states = emu.mail, emu.delta
    try:
        user = find_user(user_ref)
    except NotFound:
        return invalid_user(user_ref)
    try:
        folder = user.folder(folder_ref)
    except NotFound:
        return not_found_item()
    try:
        size = page_size(maximum=1000)
    except ValueError as exc:
        return graph_error(400, "BadRequest", str(exc))
    size = size or 10
    skiptoken, deltatoken = request.args.get("$skiptoken"), request.args.get("$deltatoken")
    immutable = prefers_immutable()
    with store.lock:
        if skiptoken is not None:
            state = states.get(skiptoken)
            if state is None or state.folder_id != folder.id:
                return _gone()
        else:
            if deltatoken is not None:
                previous = states.get(deltatoken)
                if previous is None or previous.folder_id != folder.id:
                    return _gone()
                state = SyncState(user.id, folder.id, previous.select, previous.since, previous.watermark)
            else:
                orderby = request.args.get("$orderby")
                if orderby and " ".join(orderby.lower().split()) != "receiveddatetime desc":
                    return graph_error(400, "BadRequest", "Delta query for messages supports only $orderby=receivedDateTime desc.")
                refused = bad_select(csv_arg("$select"), SELECTABLE_MESSAGE, "message")
                if refused:
                    return refused
                try:
                    state = SyncState(user.id, folder.id, csv_arg("$select"), _since(), 0)
                except QueryError as exc:
                    return graph_error(400, exc.code, exc.message)
            state.next_watermark = store.seq
            state.pending = _round(folder, state, deltatoken is None, immutable, bool(request.args.get("$orderby")))
    page, state.pending = state.pending[:size], state.pending[size:]
    body: dict[str, Any] = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(message)",
        "value": page,
    }
    if state.pending:
        body["@odata.nextLink"] = f"{_base()}?$skiptoken={states.put(state)}"
    else:
        done = SyncState(state.user_id, state.folder_id, state.select, state.since, state.next_watermark)
        body["@odata.deltaLink"] = f"{_base()}?$deltatoken={states.put(done)}"
    response = jsonify(body)
    if prefer("odata.maxpagesize") is not None:
        response.headers["Preference-Applied"] = f"odata.maxpagesize={size}"
    return response
