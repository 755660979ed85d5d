"""Sending with large attachments against the emulator over HTTPS: what the recipient gets, what is left behind."""

from __future__ import annotations

import base64
import os

import pytest
import requests

from emulator.faults import FaultRule
from graphhook.core.errors import GraphError
from workers import runtime
from workers.graph import mailbox, uploads
from workers.graph.uploads import LocalFile
from workers.response import mailops

SECOPS, BOB, OUTSIDE = "secops@contoso.com", "bob@contoso.com", "analyst@partner.example"


@pytest.fixture
def graph(settings, redis_client, emulator):
    for address in (SECOPS, BOB):
        emulator.add_user(address)
    mailops.forget_folders()
    ctx = runtime.build(settings, redis_client)
    yield ctx.graph
    ctx.graph.session.close()


def _file(tmp_path, name: str, size: int) -> LocalFile:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return LocalFile.open(path)


def _received(emulator, mailbox: str, subject: str) -> dict[str, bytes]:
    [message] = [m for m in emulator.mail.user(mailbox).folder("inbox").messages.values() if m["subject"] == subject]
    return {a["name"]: base64.b64decode(a["contentBytes"]) for a in message.get("attachments", [])}


def _drafts(emulator, mailbox: str) -> list[str]:
    return [m["subject"] for m in emulator.mail.user(mailbox).folder("drafts").messages.values()]


def test_small_files_go_in_one_sendmail_request(graph, emulator, tmp_path):
    note = _file(tmp_path, "iocs.csv", 2000)
    assert uploads.send_files(graph, SECOPS, [BOB], "IOCs", "attached", files=[note]) == "sendMail"
    assert _received(emulator, BOB, "IOCs") == {"iocs.csv": note.path.read_bytes()}
    assert not any(r["path"].endswith("/messages") and r["method"] == "POST" for r in emulator.request_log)


def test_large_files_are_uploaded_in_ranges_and_arrive_byte_for_byte(graph, emulator, tmp_path):
    capture = _file(tmp_path, "capture.pcap", 7 * 1024 * 1024 + 123)
    small = _file(tmp_path, "notes.txt", 1000)
    seen: list[tuple[str, int, int]] = []
    how = uploads.send_files(graph, SECOPS, [BOB, OUTSIDE], "Evidence", "see attached", files=[capture, small],
                             progress=lambda *p: seen.append(p))
    assert how == "draft"
    assert _received(emulator, BOB, "Evidence") == {"capture.pcap": capture.path.read_bytes(),
                                                     "notes.txt": small.path.read_bytes()}
    assert [m["to"] for m in emulator.outbound_mail if m["subject"] == "Evidence"] == [OUTSIDE]
    assert _drafts(emulator, SECOPS) == []  # the draft was sent, not left behind
    puts = [r for r in emulator.request_log if r["method"] == "PUT"]
    assert len(puts) == 3 and all(r["status"] in (200, 201) for r in puts)  # 7 MB in 3.2 MB ranges
    assert seen[-2][1:] == (capture.size, capture.size) and seen[-1] == ("notes.txt", 1000, 1000)


def test_an_upload_resumes_where_graph_says_it_is(graph, emulator, tmp_path):
    big = _file(tmp_path, "dump.bin", 5 * 1024 * 1024)
    draft = graph.post(f"{mailbox.user_path(SECOPS)}/messages", json={
        "subject": "resume", "toRecipients": mailops.recipients([BOB])}).json()["id"]
    session = graph.post(f"{mailbox.message_path(SECOPS, draft)}/attachments/createUploadSession", json={
        "AttachmentItem": {"attachmentType": "file", "name": big.name, "size": big.size}}).json()
    first = big.path.read_bytes()[:1000]
    # Another attempt already sent the first 1,000 bytes (say, before a crash).
    sent = requests.put(session["uploadUrl"], data=first, verify=str(emulator.ca_path), timeout=30,
                        headers={"Content-Range": f"bytes 0-999/{big.size}", "Content-Type": "application/octet-stream"})
    assert sent.status_code == 200
    uploads.upload(graph, session["uploadUrl"], big, mailbox=SECOPS)
    attachments = graph.get(f"{mailbox.message_path(SECOPS, draft)}/attachments")["value"]
    assert [(a["name"], a["size"]) for a in attachments] == [("dump.bin", big.size)]
    value = graph.request("GET", f"{mailbox.message_path(SECOPS, draft)}/attachments/{attachments[0]['id']}/$value")
    assert value.content == big.path.read_bytes()


def test_throttled_ranges_are_sent_again(graph, emulator, tmp_path):
    big = _file(tmp_path, "dump.bin", 4 * 1024 * 1024)
    rule = FaultRule(status=503, count=2, method="PUT", retry_after=0.1)
    emulator.faults.add(rule)
    assert uploads.send_files(graph, SECOPS, [BOB], "throttled", "", files=[big]) == "draft"
    assert rule.fired == 2
    assert _received(emulator, BOB, "throttled") == {"dump.bin": big.path.read_bytes()}


def test_a_failed_upload_deletes_the_draft_and_says_where_it_stopped(graph, emulator, tmp_path):
    big = _file(tmp_path, "dump.bin", 8 * 1024 * 1024)
    emulator.faults.add(FaultRule(status=500, count=1, method="PUT"))
    with pytest.raises(GraphError) as failure:
        uploads.send_files(graph, SECOPS, [BOB], "broken", "", files=[big])
    assert "dump.bin" in str(failure.value) and "byte 0 of 8,388,608" in str(failure.value)
    assert "authtoken" not in str(failure.value)  # the upload URL's credential is never quoted
    assert _drafts(emulator, SECOPS) == []
    assert emulator.mail.user(BOB).folder("inbox").messages == {}


def test_files_over_150_mb_and_unreadable_files_are_refused_before_anything_is_sent(tmp_path):
    huge = tmp_path / "huge.iso"
    with huge.open("wb") as f:
        f.truncate(150 * 1024 * 1024 + 1)  # sparse: no disk used
    with pytest.raises(Exception) as too_big:
        LocalFile.open(huge)
    assert "huge.iso" in str(too_big.value) and "150 MB" in str(too_big.value)
    with pytest.raises(Exception) as missing:
        LocalFile.open(tmp_path / "nope.txt")
    assert "nope.txt" in str(missing.value)
