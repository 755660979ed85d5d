"""``graphhook mail …`` run as a responder runs it, against the real emulator over HTTPS and real Redis."""

from __future__ import annotations

import base64
import json

from tests.graphhook.conftest import ALICE, BOB, SECOPS


def phish(emulator, subject: str = "Invoice overdue", **extra) -> dict:
    return emulator.mail.add_message(ALICE, {"subject": subject, "from": "ceo@evil.example",
                                             "body": "Pay now at https://evil.example", **extra})[2]


def folder_of(emulator, mailbox: str, subject: str) -> list[str]:
    user = emulator.mail.user(mailbox)
    return sorted(f.display_name for f in user.folders.values() for m in f.messages.values() if m["subject"] == subject)


def test_search_follows_every_page_json_and_table(cli, emulator):
    for i in range(120):
        phish(emulator, f"Invoice {i}")
    for i in range(15):
        emulator.mail.add_message(ALICE, {"subject": f"Lunch {i}", "from": "colleague@contoso.com"})
    code, out, _ = cli("mail", "search", "--mailbox", ALICE, "--from", "ceo@evil.example")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 120 and {r["mailbox"] for r in rows} == {ALICE}
    assert sorted(r["subject"] for r in rows) == sorted(f"Invoice {i}" for i in range(120))

    code, out, _ = cli("mail", "search", "--mailbox", ALICE, "--subject-contains", "invoice", "--max", "5")
    assert code == 0 and len(json.loads(out)) == 5

    code, out, _ = cli("mail", "search", "--mailbox", f"{ALICE},{BOB}", "--from", "ceo@evil.example", "--table")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["MAILBOX", "RECEIVEDDATETIME", "FROM", "SUBJECT", "ID"]
    assert lines[-1] == "120 message(s) in 2 mailbox(es)" and len(lines) == 122
    assert any(rows[0]["id"] in line for line in lines)  # ids are printed whole, ready for the next command


def test_get_shows_the_message(cli, emulator):
    m = phish(emulator, html="<p>Pay <b>now</b></p>")
    code, out, _ = cli("mail", "get", "--mailbox", ALICE, "--id", m["id"])
    got = json.loads(out)
    assert code == 0 and got["subject"] == "Invoice overdue" and got["body"] == {"contentType": "text", "content": "Pay now"}
    code, out, _ = cli("mail", "get", "--mailbox", ALICE, "--id", m["id"], "--html")
    assert json.loads(out)["body"]["contentType"] == "html"
    code, out, _ = cli("mail", "get", "--mailbox", ALICE, "--id", m["id"], "--table")
    assert "ceo@evil.example" in out and "Invoice overdue" in out


def test_send_html_with_attachments(cli, emulator, tmp_path):
    report, data = tmp_path / "report.pdf", bytes(range(256)) * 8
    report.write_bytes(data)
    (tmp_path / "notes.txt").write_text("IOC list")
    code, out, _ = cli("mail", "send", "--mailbox", SECOPS, "--to", BOB, "--subject", "Phishing alert",
                       "--body", "<p>Do <b>not</b> pay.</p>", "--html",
                       "--attach", str(report), str(tmp_path / "notes.txt"))
    assert code == 0 and json.loads(out)["attachments"] == ["report.pdf", "notes.txt"]
    [received] = emulator.mail.user(BOB).folder("inbox").messages.values()
    assert received["subject"] == "Phishing alert" and received["body"]["contentType"] == "html"
    attached = {a["name"]: base64.b64decode(a["contentBytes"]) for a in received["attachments"]}
    assert attached == {"report.pdf": data, "notes.txt": b"IOC list"}
    assert folder_of(emulator, SECOPS, "Phishing alert") == ["Sent Items"]


def test_send_uploads_a_large_attachment_and_shows_progress(cli, emulator, tmp_path):
    big = tmp_path / "capture.pcap"
    big.write_bytes(bytes(range(256)) * (20 * 1024 + 7))  # 5 MB: over sendMail's 4 MB request
    code, out, err = cli("mail", "send", "--mailbox", SECOPS, "--to", BOB, "--subject", "Evidence", "--attach", str(big))
    assert code == 0 and json.loads(out)["sentAs"] == "draft"
    [received] = emulator.mail.user(BOB).folder("inbox").messages.values()
    assert base64.b64decode(received["attachments"][0]["contentBytes"]) == big.read_bytes()
    assert "capture.pcap: 5.2 of 5.2 MB attached" in err


def test_send_refuses_a_file_over_150_mb(cli, emulator, tmp_path):
    huge = tmp_path / "huge.iso"
    with huge.open("wb") as f:
        f.truncate(150 * 1024 * 1024 + 1)  # sparse: no disk used
    code, _, err = cli("mail", "send", "--mailbox", SECOPS, "--to", BOB, "--subject", "x", "--attach", str(huge))
    assert code == 2 and "huge.iso" in err and "150 MB" in err
    assert emulator.mail.user(BOB).folder("inbox").messages == {}


def test_forward_move_delete_mark_read(cli, emulator):
    m = phish(emulator)
    code, out, _ = cli("mail", "forward", "--mailbox", ALICE, "--id", m["id"], "--to", SECOPS,
                       "--comment", "Reported by Alice")
    assert code == 0
    [forwarded] = emulator.mail.user(SECOPS).folder("inbox").messages.values()
    assert forwarded["subject"] == "FW: Invoice overdue" and "Reported by Alice" in forwarded["body"]["content"]

    code, out, _ = cli("mail", "mark-read", "--mailbox", ALICE, "--id", m["id"])
    assert code == 0 and emulator.mail.user(ALICE).find_message(m["id"])[1]["isRead"] is True

    code, out, _ = cli("mail", "move", "--mailbox", ALICE, "--id", m["id"], "--folder", "Inbox/Phish")
    moved = json.loads(out)
    assert code == 0 and folder_of(emulator, ALICE, "Invoice overdue") == ["Phish"]
    assert emulator.mail.user(ALICE).find_message(moved["newId"])[1]["subject"] == "Invoice overdue"

    code, out, _ = cli("mail", "delete", "--mailbox", ALICE, "--id", moved["newId"])
    assert code == 0 and folder_of(emulator, ALICE, "Invoice overdue") == ["Deleted Items"]
    code, out, _ = cli("mail", "delete", "--mailbox", ALICE, "--id", json.loads(out)["newId"], "--hard", "--table")
    assert code == 0 and "hard" in out and folder_of(emulator, ALICE, "Invoice overdue") == ["Deletions"]


def test_unknown_message_is_a_clear_error_without_secrets(cli, emulator):
    code, out, err = cli("mail", "mark-read", "--mailbox", ALICE, "--id", "AAMkNOPE")
    assert code == 1 and out == "" and "404 ErrorItemNotFound" in err
    assert emulator.client_secret not in err


def test_missing_configuration_exits_2(cli, monkeypatch):
    monkeypatch.delenv("REDIS_URL")
    code, _, err = cli("mail", "search", "--mailbox", ALICE, "--from", "ceo@evil.example")
    assert code == 2 and "REDIS_URL" in err
