"""``graphhook mail get|attachments|folders``: what a responder reads before acting, nothing is changed.

``get`` shows a message with its links — the visible text next to the real target, flagged where
they name different sites (the mismatch the rules test, :mod:`workers.records.urls`) — and its
attachments; ``--save-eml`` writes the raw RFC 5322 message from Graph's ``/$value``
(https://learn.microsoft.com/graph/outlook-get-mime-message). ``attachments`` builds the same
record the workers build (:class:`workers.records.messages.Fetcher`) and lists every attachment,
those inside attached emails too, with its SHA-256; ``--save DIR`` writes the files.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import quote

from graphhook.output import pairs, print_json, table, wants_json

LINK_COLUMNS = ("flag", "text", "target")
ATTACHMENT_COLUMNS = ("path", "kind", "contentType", "size", "sha256", "saved")
FOLDER_COLUMNS = ("path", "totalItemCount", "unreadItemCount", "id")
_UNSAFE = re.compile(r"[^\w.@+-]+")


def _address(value: Any) -> str:
    return str(((value or {}).get("emailAddress") or {}).get("address") or "")


def links_of(body: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The URLs of a Graph itemBody, each with its visible text, real target and ``mismatch`` flag."""
    from workers.records import urls

    body = body or {}
    kind = "html" if str(body.get("contentType") or "").lower() == "html" else "text"
    return urls.extract(str(body.get("content") or ""), kind)


def get(graph: Any, settings: Any, args: argparse.Namespace) -> int:
    """Show one message; with ``--save-eml`` also write its MIME."""
    from workers.graph.mailbox import message_path
    from workers.response import search

    mailbox = args.mailbox
    message = search.get_message(graph, mailbox, args.id, body_type="html" if args.html else "text")
    html_body = message.get("body") if args.html else search.get_message(
        graph, mailbox, args.id, body_type="html", select=("body",)).get("body")
    links = links_of(html_body)
    attached = []
    if message.get("hasAttachments"):
        attached = [{"name": a.get("name"), "kind": _kind(a), "contentType": a.get("contentType"),
                     "size": a.get("size"), "isInline": bool(a.get("isInline")), "id": a.get("id")}
                    for a in graph.paged(message_path(mailbox, args.id) + "/attachments",
                                         params={"$select": "id,name,contentType,size,isInline"})]
    saved = None
    if args.save_eml:
        saved = _save_eml(graph, message_path(mailbox, args.id) + "/$value", args.save_eml)
    if wants_json(args):
        if args.save_eml != "-":
            print_json({**message, "urls": links, "attachments": attached,
                        **({"savedEml": saved} if saved else {})})
        return 0
    if args.save_eml == "-":
        return 0
    pairs({"mailbox": mailbox, **{k: message.get(k) for k in (
        "id", "internetMessageId", "receivedDateTime", "subject", "isRead", "hasAttachments")},
        "from": _address(message.get("from")),
        "to": ", ".join(_address(r) for r in message.get("toRecipients") or []),
        "cc": ", ".join(_address(r) for r in message.get("ccRecipients") or []),
        **({"saved": saved} if saved else {})})
    if links:
        mismatched = sum(1 for link in links if link["mismatch"])
        print(f"\nlinks ({len(links)}; {mismatched} whose text shows another site than the target)")
        table([{"flag": "MISMATCH" if link["mismatch"] else "", "text": link["text"] or "(bare URL)",
                "target": link["url"]} for link in links], LINK_COLUMNS)
    if attached:
        print(f"\nattachments ({len(attached)}; hashes and nested ones: graphhook mail attachments)")
        table(attached, ("name", "kind", "contentType", "size"))
    print("\nbody")
    print((message.get("body") or {}).get("content", ""))
    return 0


def _kind(attachment: Mapping[str, Any]) -> str:
    odata = str(attachment.get("@odata.type") or "").rsplit(".", 1)[-1].lower()
    return {"fileattachment": "file", "itemattachment": "item", "referenceattachment": "reference"}.get(odata, odata)


def _save_eml(graph: Any, path: str, target: str) -> str:
    """Stream ``/$value`` to ``target`` (``-``: stdout); the path written."""
    with graph.stream(path) as response:
        if target == "-":
            out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
            for chunk in response.iter_content(64 * 1024):
                if out is not None:
                    out.write(chunk)
                else:
                    sys.stdout.write(chunk.decode("utf-8", "replace"))
            sys.stdout.flush()
            return "-"
        partial = Path(f"{target}.part")
        with open(partial, "wb") as fh:
            for chunk in response.iter_content(64 * 1024):
                fh.write(chunk)
        os.replace(partial, target)
    return str(target)


def attachments(graph: Any, settings: Any, args: argparse.Namespace) -> int:
    """List (and save) every attachment of one message, nested ones included."""
    from workers.graph.mailbox import message_path
    from workers.records.messages import Fetcher, FetchOptions

    keep = tempfile.mkdtemp(prefix="graphhook-attachments-")
    options = FetchOptions(max_bytes=settings.attachment_max_bytes, spool_bytes=settings.attachment_spool_bytes,
                           keep_dir=keep, item_depth=settings.item_depth)
    from workers.response.progress import ProgressBar

    fetcher = Fetcher(graph, args.mailbox, options)
    bar = ProgressBar(label="attachments")  # on a terminal only (stderr), like purge and search
    try:
        if bar.enabled:
            print("fetching the message and its attachments from Graph…", file=sys.stderr, flush=True)
        record = fetcher.record(args.id, mailbox=args.mailbox)
        rows = list(_walk(record, ""))
        for done, row in enumerate(rows, 1):  # attached emails' MIME is at the first level only (…/{id}/$value)
            bar({"done": done, "total": len(rows)})
            if row["kind"] == "item" and row["depth"] == 0 and row["id"]:
                sink = fetcher.value(message_path(args.mailbox, args.id) + f"/attachments/{quote(row['id'], safe='')}"
                                     "/$value")
                row.update(sha256=sink.sha256, file=sink.keep(keep), size=row["size"] or sink.size)
        if args.save:
            _save(rows, args.save)
    finally:
        bar.close()
        fetcher.close()
        shutil.rmtree(keep, ignore_errors=True)
    out = [{k: v for k, v in row.items() if k != "file"} for row in rows]
    if wants_json(args):
        print_json(out)
    elif out:
        table(out, ATTACHMENT_COLUMNS)
        print(f"{len(out)} attachment(s)" + (f"; saved in {args.save}" if args.save else ""))
    else:
        print("no attachments")
    return 0


def _walk(record: Mapping[str, Any], prefix: str, depth: int = 0) -> Iterator[dict[str, Any]]:
    for a in record.get("attachments") or []:
        path = f"{prefix}{a.get('name') or '(unnamed)'}"
        yield {"path": path, "name": a.get("name"), "kind": a.get("kind"), "contentType": a.get("contentType"),
               "size": a.get("size"), "sha256": a.get("sha256"), "isInline": a.get("isInline"),
               "truncated": a.get("truncated"), "depth": depth, "id": a.get("id") if depth == 0 else None,
               "saved": None, "file": a.get("path")}
        if isinstance(a.get("email"), Mapping):
            yield from _walk(a["email"], path + " › ", depth + 1)


def safe_name(name: str, kind: str) -> str:
    """A file name from a stranger's attachment name: no directories, no leading dots, ``.eml`` for emails."""
    base = _UNSAFE.sub("_", os.path.basename(str(name).replace("\\", "/"))).lstrip("._") or "attachment"
    if kind == "item" and not base.lower().endswith(".eml"):
        base += ".eml"
    return base[:200]


def _save(rows: list[dict[str, Any]], directory: str) -> None:
    os.makedirs(directory, mode=0o700, exist_ok=True)
    taken: set[str] = set(os.listdir(directory))
    for row in rows:
        if not row.get("file"):
            continue
        name = safe_name(row["name"] or "attachment", row["kind"])
        stem, ext = os.path.splitext(name)
        n = 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}{ext}"
        taken.add(name)
        target = os.path.join(directory, name)
        shutil.copyfile(row["file"], target)
        os.chmod(target, 0o600)
        row["saved"] = target


def folders(graph: Any, settings: Any, args: argparse.Namespace) -> int:
    """Every folder of the mailbox (children too) with its path, item counts and id."""
    from workers.graph.mailbox import user_path

    base = user_path(args.mailbox)
    select = {"$select": "id,displayName,totalItemCount,unreadItemCount,childFolderCount", "$top": "100"}
    rows: list[dict[str, Any]] = []

    def walk(path: str, prefix: str) -> None:
        for folder in graph.paged(path, params=select):
            row = {"path": prefix + str(folder.get("displayName") or ""), "id": folder.get("id"),
                   "totalItemCount": folder.get("totalItemCount"), "unreadItemCount": folder.get("unreadItemCount"),
                   "childFolderCount": folder.get("childFolderCount")}
            rows.append(row)
            if folder.get("childFolderCount"):
                walk(f"{base}/mailFolders/{quote(str(folder['id']), safe='')}/childFolders", row["path"] + "/")

    walk(f"{base}/mailFolders", "")
    if wants_json(args):
        print_json(rows)
    else:
        table(rows, FOLDER_COLUMNS)
        print(f"{len(rows)} folder(s)")
    return 0


ACTIONS: dict[str, Callable[[Any, Any, argparse.Namespace], int]] = {
    "get": get, "attachments": attachments, "folders": folders}
