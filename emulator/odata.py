"""OData annotations Graph puts on mail resources: ``@odata.context``, ``@odata.etag``, ``@odata.type``.

Shapes from Microsoft's examples (microsoftgraph/microsoft-graph-docs-contrib, v1.0):

- a message: ``@odata.context`` ``…/$metadata#users('{id}')/messages/$entity`` (with ``messages(a,b)``
  under ``$select``) and ``@odata.etag`` ``W/"{changeKey}"`` (api/message-get.md);
- a moved or copied message: ``@odata.context`` ``…/$metadata#message``, ``@odata.type`` and the etag
  (api/message-move.md);
- list items and delta items carry their ``@odata.etag``; delta items also ``@odata.type``
  (api/user-list-messages.md, concepts/delta-query-messages.md);
- an attachment: ``…/$metadata#users('{id}')/messages('{message id}')/attachments/$entity`` with the
  message id percent-encoded, and ``item@odata.context`` on an expanded item attachment
  (api/attachment-get.md).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

METADATA = "https://graph.microsoft.com/v1.0/$metadata#"
MESSAGE_TYPE = "#microsoft.graph.message"


def etag(message: dict[str, Any]) -> str:
    """A message's weak ETag: its changeKey."""
    return f'W/"{message["changeKey"]}"'


def _key(value: str) -> str:
    return quote(value, safe="")


def message_entity(out: dict[str, Any], message: dict[str, Any], user_id: str,
                   fields: list[str] | None = None) -> dict[str, Any]:
    """A single message as ``GET …/messages/{id}`` answers it."""
    selected = f"({','.join(fields)})" if fields else ""
    return {"@odata.context": f"{METADATA}users('{user_id}')/messages{selected}/$entity",
            "@odata.etag": etag(message), **out}


def moved_entity(out: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """A message as ``move``/``copy`` answer it."""
    return {"@odata.context": f"{METADATA}message", "@odata.type": MESSAGE_TYPE, "@odata.etag": etag(message), **out}


def list_item(out: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """A message inside a collection."""
    return {"@odata.etag": etag(message), **out}


def delta_item(out: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """A message inside a delta page (removed items keep their ``@removed`` shape)."""
    return {"@odata.type": MESSAGE_TYPE, "@odata.etag": etag(message), **out}


def attachments_context(user_id: str, message_id: str, entity: bool) -> str:
    """The context URL of a message's attachments (the collection, or one ``$entity``)."""
    return f"{METADATA}users('{user_id}')/messages('{_key(message_id)}')/attachments" + ("/$entity" if entity else "")


def attachment_entity(out: dict[str, Any], user_id: str, message_id: str) -> dict[str, Any]:
    """A single attachment as ``GET …/attachments/{id}`` answers it (with ``item@odata.context`` when expanded)."""
    body = {"@odata.context": attachments_context(user_id, message_id, True), **out}
    if isinstance(out.get("item"), dict):
        body["item@odata.context"] = (f"{METADATA}users('{user_id}')/messages('{_key(message_id)}')/attachments"
                                      f"('{_key(str(out['id']))}')/microsoft.graph.itemAttachment/item/$entity")
    return body
