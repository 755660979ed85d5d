"""The email record built from the emulator's messages: every attachment kind, verdicts, URLs, limits."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest

from emulator.seed import PHISHING
from tests.conftest import ROOT
from workers.records import attachments
from workers.records.messages import SCHEMA, Fetcher, FetchOptions, email_record

SCHEMA_FILE = ROOT / "docs" / "email-record.schema.json"


@pytest.fixture
def user(emulator):
    return emulator.add_user("alice@contoso.com")


def _graph_requests(emulator, message_id: str) -> list[str]:
    return [r["path"] for r in emulator.request_log if message_id in r["path"] or "$batch" in r["path"]]


def test_phishing_message_record_has_verdicts_mismatched_link_and_hashed_attachment(emulator, ctx, user):
    message = emulator.deliver("alice@contoso.com", PHISHING)
    record = Fetcher(ctx.graph, user.id).record(message["id"], mailbox="alice@contoso.com", folder="inbox")
    assert record["schema"] == SCHEMA == "graphhook.email/1"
    assert (record["mailbox"], record["folder"]) == ("alice@contoso.com", "inbox")
    assert record["authentication"] == {"spf": "fail", "dkim": "fail", "dmarc": "fail"}
    link = record["urls"][0]
    assert link["domain"] == "login-micros0ft-support.example.net"
    assert link["textDomain"] == "portal.office.com" and link["mismatch"] is True
    assert "Your mailbox is almost full." in record["bodyText"] and record["bodyHtml"].startswith("<html>")
    (page,) = record["attachments"]
    content = PHISHING["attachments"][0]["content"]
    assert page["kind"] == "file" and page["extension"] == "html" and page["size"] == len(content)
    assert page["sha256"] == hashlib.sha256(content).hexdigest()
    assert _graph_requests(emulator, message["id"]) == [f"/v1.0/users/{user.id}/messages/{message['id']}"]


def test_item_attachments_become_nested_records_and_reference_attachments_are_described(emulator, ctx, user):
    message = emulator.deliver("alice@contoso.com", {"subject": "fw: two", "attachments": [
        {"kind": "item", "name": "first", "item": {"subject": "inner one", "from": "x@fabrikam.com",
                                                   "headers": {"Authentication-Results": "spf=softfail; dkim=pass; dmarc=bestguesspass"}}},
        {"kind": "item", "name": "second", "item": {"subject": "inner two", "body": "see https://fabrikam.com/a"}},
        {"kind": "reference", "name": "plan.docx", "sourceUrl": "https://contoso.sharepoint.com/plan.docx"},
    ]})
    record = Fetcher(ctx.graph, user.id).record(message["id"], mailbox="alice@contoso.com")
    first, second, ref = record["attachments"]
    assert first["kind"] == "item" and first["email"]["subject"] == "inner one"
    assert first["email"]["authentication"] == {"spf": "softfail", "dkim": "pass", "dmarc": "bestguesspass"}
    assert first["email"]["from"]["address"] == "x@fabrikam.com"
    assert second["email"]["urls"][0]["domain"] == "fabrikam.com"
    # Graph v1.0 does not expose a reference attachment's link (beta only): the record must not invent one.
    assert ref["kind"] == "reference" and ref["name"] == "plan.docx" and ref["sourceUrl"] is None
    assert "providerType" not in ref and ref["size"] > 0
    assert ref["sha256"] is None and ref["path"] is None


def test_item_depth_limit_stops_nesting(emulator, ctx, user):
    message = emulator.deliver("alice@contoso.com", {"subject": "outer", "attachments": [
        {"kind": "item", "name": "inner", "item": {"subject": "inner"}}]})
    record = Fetcher(ctx.graph, user.id, FetchOptions(item_depth=0)).record(message["id"], mailbox="a")
    assert record["attachments"][0]["email"] is None and record["attachments"][0]["truncated"] is True


def test_large_attachment_is_streamed_hashed_and_kept_on_disk(emulator, ctx, user, tmp_path, monkeypatch):
    monkeypatch.setattr(attachments, "INLINE_JSON", 64 * 1024)  # stream replies past 64 KiB instead of 4 MiB
    big = os.urandom(3 * 1024 * 1024 + 5)
    message = emulator.deliver("alice@contoso.com", {"subject": "big", "attachments": [
        {"kind": "file", "name": "small.txt", "content": b"tiny"},
        {"kind": "file", "name": "Big.ZIP", "content": big}]})
    options = FetchOptions(spool_bytes=256 * 1024, keep_dir=str(tmp_path / "keep"))
    fetcher = Fetcher(ctx.graph, user.id, options)
    record = fetcher.record(message["id"], mailbox="alice@contoso.com")
    small, large = record["attachments"]
    assert small["sha256"] == hashlib.sha256(b"tiny").hexdigest()
    assert large["extension"] == "zip" and large["size"] == len(big)
    assert large["sha256"] == hashlib.sha256(big).hexdigest()
    assert Path(large["path"]).read_bytes() == big
    assert any(s.spilled for s in fetcher._sinks)  # past the spool threshold it went to disk, not memory


def test_attachment_over_the_maximum_is_described_but_not_kept(emulator, ctx, user, tmp_path):
    data = b"x" * 5000
    message = emulator.deliver("alice@contoso.com", {"subject": "big", "attachments": [
        {"kind": "file", "name": "a.bin", "content": data}]})
    record = Fetcher(ctx.graph, user.id, FetchOptions(max_bytes=1000, keep_dir=str(tmp_path))).record(
        message["id"], mailbox="a")
    entry = record["attachments"][0]
    assert entry["truncated"] is True and entry["path"] is None and entry["size"] == 5000


def test_bytes_left_out_by_graph_are_fetched_through_value_as_a_stream(emulator, ctx, user, tmp_path):
    data = os.urandom(300_000)
    message = emulator.deliver("alice@contoso.com", {"subject": "x", "attachments": [
        {"kind": "file", "name": "report.pdf", "content": data, "contentType": "application/pdf"}]})
    fetcher = Fetcher(ctx.graph, user.id, FetchOptions(keep_dir=str(tmp_path)))
    raw = fetcher.client.get(f"users/{user.id}/messages/{message['id']}", params={"$expand": "attachments"})
    del raw["attachments"][0]["contentBytes"]  # as Graph does for attachments too large to inline
    record = email_record(raw, mailbox="a", fetcher=fetcher, message_id=message["id"])
    entry = record["attachments"][0]
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() and Path(entry["path"]).read_bytes() == data
    assert any(p.endswith("/$value") for p in _graph_requests(emulator, message["id"]))


def test_raw_mime_is_fetched_when_asked(emulator, ctx, user, tmp_path):
    message = emulator.deliver("alice@contoso.com", {"subject": "mime please", "body": "hello"})
    record = Fetcher(ctx.graph, user.id, FetchOptions(fetch_mime=True, keep_dir=str(tmp_path))).record(
        message["id"], mailbox="a")
    mime = Path(record["mime"]["path"]).read_bytes()
    assert b"Subject: mime please" in mime and record["mime"]["sha256"] == hashlib.sha256(mime).hexdigest()


def test_streamed_json_decodes_escaped_base64_split_across_chunks():
    data = os.urandom(200_000)
    encoded = base64.b64encode(data).decode().replace("/", "\\/").replace("+", "\\u002B")
    body = ('{"value": [{"name": "a\\"b", "contentBytes": "' + encoded + '", "n": 1}]}').encode()
    chunks = [body[i:i + 4093] for i in range(0, len(body), 4093)]
    old = attachments.INLINE_JSON
    attachments.INLINE_JSON = 1024
    try:
        doc, sinks = attachments.read_json(chunks, lambda: attachments.Sink(max_bytes=10**9, spool_bytes=10**6))
    finally:
        attachments.INLINE_JSON = old
    item = doc["value"][0]
    assert item["name"] == 'a"b' and item["n"] == 1
    assert sinks[item["contentBytes"]].read() == data


def test_record_matches_the_published_json_schema(emulator, ctx, user):
    jsonschema = pytest.importorskip("jsonschema")
    message = emulator.deliver("alice@contoso.com", {**PHISHING, "attachments": PHISHING["attachments"] + [
        {"kind": "item", "name": "fw", "item": {"subject": "inner"}},
        {"kind": "reference", "name": "r", "sourceUrl": "https://contoso.sharepoint.com/r"}]})
    record = Fetcher(ctx.graph, user.id).record(message["id"], mailbox="alice@contoso.com", folder="inbox")
    jsonschema.validate(json.loads(json.dumps(record)), json.loads(SCHEMA_FILE.read_text()))


def test_a_phish_reported_as_attachment_carries_its_own_attachments(emulator, ctx, user):
    """Users report phishing by attaching the message; what it carries (an HTML page, an email inside an
    email) must reach the rules and webhooks like a top-level attachment."""
    from workers.triggers.rules import iter_attachments

    page = b"<html><form action='https://evil.example/login'>"
    inner = {"subject": "Your mailbox is full", "from": "it@evil.example", "attachments": [
        {"kind": "file", "name": "Login.HTML", "contentType": "text/html", "content": page},
        {"kind": "item", "name": "deeper", "item": {"subject": "deeper", "attachments": [
            {"kind": "file", "name": "payload.iso", "content": b"ISO"}]}}]}
    message = emulator.deliver("alice@contoso.com", {"subject": "Phish report", "attachments": [
        {"kind": "item", "name": "Your mailbox is full", "item": inner}]})
    record = Fetcher(ctx.graph, user.id).record(message["id"], mailbox="alice@contoso.com")
    reported = record["attachments"][0]["email"]
    html, deeper = reported["attachments"]
    assert html["extension"] == "html" and html["sha256"] == hashlib.sha256(page).hexdigest()
    assert deeper["email"]["attachments"][0]["name"] == "payload.iso"
    assert [a["name"] for a in iter_attachments(record)] == ["Your mailbox is full", "Login.HTML", "deeper",
                                                            "payload.iso"]


@pytest.fixture
def common_umask():
    """The usual umask 022, under which a plain open() makes world-readable files."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_kept_attachments_are_readable_by_the_worker_user_only(emulator, ctx, user, tmp_path, common_umask):
    data = os.urandom(50_000)
    message = emulator.deliver("alice@contoso.com", {"subject": "private", "attachments": [
        {"kind": "file", "name": "payslip.pdf", "content": data}]})
    keep = tmp_path / "keep"
    record = Fetcher(ctx.graph, user.id, FetchOptions(keep_dir=str(keep))).record(message["id"], mailbox="a")
    kept = Path(record["attachments"][0]["path"])
    assert kept.read_bytes() == data
    assert oct(kept.stat().st_mode & 0o777) == oct(0o600)
    assert oct(keep.stat().st_mode & 0o777) == oct(0o700)
    assert [p.name for p in keep.iterdir()] == [kept.name]  # no partial file left behind


def test_a_file_kept_world_readable_before_is_tightened_when_kept_again(tmp_path, common_umask):
    sink = attachments.Sink(max_bytes=1000, spool_bytes=1000)
    sink.write(b"hello")
    old = tmp_path / sink.sha256
    old.write_bytes(b"hello")
    old.chmod(0o644)
    assert sink.keep(str(tmp_path)) == str(old)
    assert oct(old.stat().st_mode & 0o777) == oct(0o600)
    sink.close()
