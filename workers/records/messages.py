"""Fetching a message from Graph and turning it into graphhook's email record (docs/email-record.md).

One request gets the message with the properties we use and its attachments
(``$select`` + ``$expand=attachments``,
https://learn.microsoft.com/graph/api/message-get). Extra requests happen only
when Graph gives less: one per item attachment to expand its inner message
(``?$expand=microsoft.graph.itemattachment/item``, batched when there are
several), one ``/$value`` stream per file attachment whose bytes were left out,
and one ``/$value`` for raw MIME when ``GRAPHHOOK_FETCH_MIME`` is on.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import quote

from graphhook.core.errors import GraphError
from graphhook.core.settings import Settings
from workers.graph.client import GraphClient, error_for
from workers.graph.mailbox import message_path
from workers.records import attachments, authresults, urls

log = logging.getLogger("graphhook.messages")

SCHEMA = "graphhook.email/1"
SELECT = (
    "id,internetMessageId,conversationId,subject,from,sender,replyTo,toRecipients,ccRecipients,"
    "bccRecipients,sentDateTime,receivedDateTime,body,bodyPreview,internetMessageHeaders,categories,"
    "isRead,importance,webLink,parentFolderId,hasAttachments"
)
ITEM_EXPAND = "microsoft.graph.itemattachment/item"
_EXTENSION = re.compile(r"^[a-z0-9]{1,10}$")


@dataclass(frozen=True)
class FetchOptions:
    """How much to fetch and keep; built from settings (see deploy/env.example)."""

    max_bytes: int = 150 * 1024 * 1024
    spool_bytes: int = 1024 * 1024
    keep_dir: str = ""
    item_depth: int = 3
    fetch_mime: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> "FetchOptions":
        """Options from GRAPHHOOK_ATTACHMENT_* / GRAPHHOOK_ITEM_DEPTH / GRAPHHOOK_FETCH_MIME."""
        return cls(settings.attachment_max_bytes, settings.attachment_spool_bytes, settings.attachment_dir,
                   settings.item_depth, settings.fetch_mime)

    def sink(self) -> attachments.Sink:
        """A new sink honouring the size limits."""
        return attachments.Sink(max_bytes=self.max_bytes, spool_bytes=self.spool_bytes)


def _address(recipient: dict[str, Any] | None) -> dict[str, str] | None:
    if not recipient:
        return None
    email = recipient.get("emailAddress") or {}
    return {"name": email.get("name") or "", "address": (email.get("address") or "").lower()}


def _addresses(recipients: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    return [a for a in (_address(r) for r in recipients or []) if a]


def _extension(name: str | None) -> str | None:
    ext = os.path.splitext(name or "")[1].lstrip(".").lower()
    return ext if _EXTENSION.match(ext) else None


def _kind(attachment: dict[str, Any]) -> str:
    odata = attachment.get("@odata.type", "").rsplit(".", 1)[-1].lower()
    return {"fileattachment": "file", "itemattachment": "item", "referenceattachment": "reference"}.get(odata, odata)


def _chunks(response: Any) -> Iterator[bytes]:
    """The body in chunks, keeping the mailbox slot alive during long downloads (slots expire after 90 s)."""
    for n, chunk in enumerate(response.iter_content(attachments.CHUNK)):
        if n % 64 == 63:  # every 16 MiB
            response.extend_slot()
        yield chunk


class Fetcher:
    """Fetches messages of one mailbox and everything their records need."""

    def __init__(self, client: GraphClient | None, user_id: str, options: FetchOptions | None = None) -> None:
        self.client, self.user_id = client, user_id
        self.options = options or FetchOptions()
        self._sinks: list[attachments.Sink] = []

    def _path(self, message_id: str, tail: str = "") -> str:
        # Ids come from notifications: escaped, so "x/../../{other user}/messages/{id}" stays one segment
        # (HTTP clients resolve dot segments, which would otherwise leave this mailbox).
        return message_path(self.user_id, message_id) + tail

    def _graph(self) -> GraphClient:
        if self.client is None:
            raise RuntimeError("this Fetcher has no Graph client (it only builds records from given data)")
        return self.client

    def message(self, message_id: str) -> tuple[dict[str, Any], dict[str, attachments.Sink]]:
        """GET the message with its attachments in one request; long contentBytes arrive as sinks."""
        params = {"$select": SELECT, "$expand": "attachments"}
        with self._graph().stream(self._path(message_id), params=params) as response:
            document, sinks = attachments.read_json(_chunks(response), self._new_sink)
        return document, sinks

    def _new_sink(self) -> attachments.Sink:
        sink = self.options.sink()
        self._sinks.append(sink)
        return sink

    def prefetch(self, message_ids: list[str]) -> dict[str, tuple[dict[str, Any], dict[str, attachments.Sink]] | GraphError]:
        """Several messages of this mailbox in one ``$batch`` round trip (each as :meth:`message` gives it)."""
        client = self._graph()
        query = f"?$select={SELECT}&$expand=attachments"
        sinks: dict[str, attachments.Sink] = {}
        answers = client.batch([{"method": "GET", "url": self._path(mid, query)} for mid in message_ids],
                               new_sink=self._new_sink, sinks=sinks)
        out: dict[str, tuple[dict[str, Any], dict[str, attachments.Sink]] | GraphError] = {}
        for mid, answer in zip(message_ids, answers):
            if 200 <= answer["status"] < 300 and isinstance(answer["body"], dict):
                out[mid] = (answer["body"], sinks)
            else:
                out[mid] = error_for(answer["status"], answer["body"], method="GET", url=self._path(mid))
        return out

    def value(self, path: str) -> attachments.Sink:
        """Stream ``path`` (a ``/$value``) into a new sink, stopping once past the maximum."""
        sink = self._new_sink()
        with self._graph().stream(path) as response:
            for chunk in _chunks(response):
                sink.write(chunk)
                if sink.truncated:
                    break  # closing the response drops the rest; no need to read 150 MB for nothing
        return sink

    def items(self, message_id: str, attachment_ids: list[str]) -> dict[str, dict[str, Any] | GraphError]:
        """Expanded item attachments by id: one request each, or one ``$batch`` for several."""
        query = f"?$expand={ITEM_EXPAND}"
        paths = {aid: self._path(message_id, f"/attachments/{quote(aid, safe='')}{query}") for aid in attachment_ids}
        out: dict[str, dict[str, Any] | GraphError] = {}
        client = self._graph()
        if len(paths) > 1 and client.batch_supported:
            try:
                answers = client.batch([{"method": "GET", "url": p} for p in paths.values()])
            except GraphError as exc:
                if exc.status not in (400, 404, 405):
                    raise
                client.batch_supported = False
            else:
                for aid, answer in zip(paths, answers):
                    ok = 200 <= answer["status"] < 300
                    out[aid] = answer["body"] if ok else error_for(answer["status"], answer["body"], method="GET", url=paths[aid])
                return out
        for aid, path in paths.items():
            try:
                out[aid] = client.get(path)
            except GraphError as exc:
                out[aid] = exc
        return out

    def close(self) -> None:
        """Drop every temporary file this fetch made."""
        for sink in self._sinks:
            sink.close()
        self._sinks.clear()

    # --- the record -----------------------------------------------------------------------
    def record(self, message_id: str, *, mailbox: str, folder: str | None = None,
               prefetched: tuple[dict[str, Any], dict[str, attachments.Sink]] | GraphError | None = None) -> dict[str, Any]:
        """Fetch ``message_id`` (unless :meth:`prefetch` already did) and build its email record."""
        if isinstance(prefetched, GraphError):
            raise prefetched
        message, sinks = prefetched if prefetched is not None else self.message(message_id)
        record = email_record(message, mailbox=mailbox, folder=folder, fetcher=self, sinks=sinks,
                              message_id=message_id, depth=0)
        if self.options.fetch_mime:
            sink = self.value(self._path(message_id, "/$value"))
            record["mime"] = self._file_facts(sink)
        return record

    def _file_facts(self, sink: attachments.Sink) -> dict[str, Any]:
        path = sink.keep(self.options.keep_dir) if self.options.keep_dir else None
        return {"size": sink.size, "sha256": sink.sha256, "path": path, "truncated": sink.truncated}

    def attachment(self, attachment: dict[str, Any], *, message_id: str | None, sinks: dict[str, attachments.Sink],
                   depth: int, item: dict[str, Any] | GraphError | None = None) -> dict[str, Any]:
        """One attachment entry of the record (see docs/email-record.md)."""
        kind = _kind(attachment)
        entry: dict[str, Any] = {
            "id": attachment.get("id"), "kind": kind, "name": attachment.get("name"),
            "extension": _extension(attachment.get("name")) if kind == "file" else None,
            "contentType": attachment.get("contentType"), "size": attachment.get("size"),
            "sha256": None, "isInline": bool(attachment.get("isInline")), "contentId": attachment.get("contentId"),
            "email": None, "sourceUrl": None, "path": None, "truncated": False,
        }
        if kind == "file":
            content = attachment.get("contentBytes")
            sink: attachments.Sink | None = None
            if isinstance(content, str) and content.startswith(attachments.SPOOL_MARK):
                sink = sinks[content]
            elif isinstance(content, str):
                sink = self._new_sink()
                try:
                    sink.write(base64.b64decode(content))
                except (binascii.Error, ValueError):
                    log.warning("attachment %s has invalid contentBytes", entry["id"])
                    sink = None
            elif message_id and entry["id"] and self.client and (entry["size"] or 0) <= self.options.max_bytes:
                # Graph left the bytes out (large attachment): stream them through /$value.
                sink = self.value(self._path(message_id, f"/attachments/{quote(str(entry['id']), safe='')}/$value"))
            elif (entry["size"] or 0) > self.options.max_bytes:
                entry["truncated"] = True
            if sink is not None:
                facts = self._file_facts(sink)
                entry.update(size=facts["size"], sha256=facts["sha256"], path=facts["path"], truncated=facts["truncated"])
        elif kind == "reference":
            # Graph v1.0 does not expose the link (only beta's referenceAttachment has sourceUrl): null unless
            # GRAPH_URL points at an endpoint that gives it (docs/email-record.md, docs/conformance.md).
            entry["sourceUrl"] = attachment.get("sourceUrl")
        elif kind == "item":
            inner = attachment.get("item") if item is None else item.get("item") if isinstance(item, dict) else None
            if isinstance(item, GraphError):
                log.warning("item attachment %s could not be expanded: %s", entry["id"], item)
            if depth + 1 > self.options.item_depth:
                entry["truncated"] = True  # nested deeper than GRAPHHOOK_ITEM_DEPTH: described, not opened
            elif isinstance(inner, dict):
                entry["email"] = email_record(inner, mailbox=None, folder=None, fetcher=self, sinks=sinks,
                                              message_id=None, depth=depth + 1)
        return entry


def _body(message: dict[str, Any]) -> tuple[str | None, str | None, list[dict[str, Any]]]:
    body = message.get("body") or {}
    content, kind = body.get("content") or "", (body.get("contentType") or "text").lower()
    bound = urls.HTML_CHARS if kind == "html" else urls.TEXT_CHARS
    if len(content) > bound:
        # The record keeps the whole body; links and text past the bound are not scanned (urls.py).
        log.info("message %s: %s body of %d characters; only the first %d are scanned for links",
                 message.get("id"), kind, len(content), bound)
    if kind == "html":
        found, text = urls.scan_html(content)
        return text, content, found
    return content, None, urls.extract(content, "text")


def email_record(message: dict[str, Any], *, mailbox: str | None, folder: str | None = None,
                 fetcher: Fetcher | None = None, sinks: dict[str, attachments.Sink] | None = None,
                 message_id: str | None = None, depth: int = 0) -> dict[str, Any]:
    """The versioned email record built from a Graph message resource (nested records for item attachments)."""
    text, html, found = _body(message)
    headers = [{"name": h.get("name"), "value": h.get("value")} for h in message.get("internetMessageHeaders") or []]
    fetcher = fetcher or Fetcher(None, "", FetchOptions())  # no client: build from the given data only
    raw = message.get("attachments") or []
    items_to_expand = [a["id"] for a in raw if _kind(a) == "item" and "item" not in a and message_id
                       and depth < fetcher.options.item_depth and fetcher.client is not None]
    expanded = fetcher.items(message_id, items_to_expand) if items_to_expand and message_id else {}
    return {
        "schema": SCHEMA,
        "mailbox": mailbox,
        "folder": folder,
        "folderId": message.get("parentFolderId"),
        "id": message.get("id"),
        "internetMessageId": message.get("internetMessageId"),
        "conversationId": message.get("conversationId"),
        "subject": message.get("subject") or "",
        "from": _address(message.get("from")),
        "sender": _address(message.get("sender")),
        "replyTo": _addresses(message.get("replyTo")),
        "to": _addresses(message.get("toRecipients")),
        "cc": _addresses(message.get("ccRecipients")),
        "bcc": _addresses(message.get("bccRecipients")),
        "sentDateTime": message.get("sentDateTime"),
        "receivedDateTime": message.get("receivedDateTime"),
        "bodyText": text,
        "bodyHtml": html,
        "preview": message.get("bodyPreview") or "",
        "headers": headers,
        "authentication": authresults.from_headers(headers),
        "urls": found,
        "attachments": [fetcher.attachment(a, message_id=message_id, sinks=sinks or {}, depth=depth,
                                           item=expanded.get(a.get("id"))) for a in raw],
        "categories": list(message.get("categories") or []),
        "isRead": bool(message.get("isRead")),
        "importance": message.get("importance"),
        "webLink": message.get("webLink"),
    }


def fetch_message(client: GraphClient, user_id: str, message_id: str) -> dict[str, Any]:
    """GET the message with its attachments in one request (plain JSON; kept for callers outside the worker)."""
    return client.get(message_path(user_id, message_id), params={"$select": SELECT, "$expand": "attachments"})
