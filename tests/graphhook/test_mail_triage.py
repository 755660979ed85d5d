"""Triage, scope and act, as a responder does it: ``mail get|attachments|folders|search|send|reply`` against the
real emulator over HTTPS and a real Redis."""

from __future__ import annotations

import email
import hashlib
import json
import os
from email import policy

from emulator.faults import FaultRule
from graphhook.commands.mail_triage import safe_name
from tests.graphhook.conftest import ALICE, BOB, SECOPS

LURE = ('<p>Your storage is full. <a href="https://login-micros0ft-support.example.net/reset">'
        'https://portal.office.com/storage</a> or <a href="https://portal.office.com/help">'
        'https://portal.office.com/help</a></p>')
PAYLOAD = b"<html><script>steal()</script></html>"
INVOICE = b"%PDF-1.4 invoice"


def campaign(emulator) -> dict:
    """A lure with a mismatched link, a PDF, and an attached email carrying an HTML payload."""
    inner = {"subject": "Fwd: shared document", "from": "partner@fabrikam.com",
             "attachments": [{"name": "payload.html", "content": PAYLOAD, "contentType": "text/html"}]}
    return emulator.mail.add_message(ALICE, {
        "subject": "Storage full", "from": {"name": "IT Support", "address": "it@fabrikam.com"}, "html": LURE,
        "attachments": [{"name": "../../invoice.pdf", "content": INVOICE, "contentType": "application/pdf"},
                        {"kind": "item", "name": "Shared document", "item": inner}]})[2]


def test_get_shows_link_text_against_the_real_target_and_flags_the_mismatch(cli, emulator):
    m = campaign(emulator)
    code, out, _ = cli("mail", "get", "--mailbox", ALICE, "--id", m["id"], "--table")
    assert code == 0
    [flagged] = [line for line in out.splitlines() if line.startswith("MISMATCH")]
    assert "https://portal.office.com/storage" in flagged and "login-micros0ft-support.example.net/reset" in flagged
    assert "links (2; 1 whose text shows another site than the target)" in out
    assert "invoice.pdf" in out and "Shared document" in out  # the attachments are listed
    code, out, _ = cli("mail", "get", "--mailbox", ALICE, "--id", m["id"], "--json")
    got = json.loads(out)
    assert [(u["textDomain"], u["domain"], u["mismatch"]) for u in got["urls"]] == [
        ("portal.office.com", "login-micros0ft-support.example.net", True),
        ("portal.office.com", "portal.office.com", False)]
    assert [a["name"] for a in got["attachments"]] == ["../../invoice.pdf", "Shared document"]


def test_get_saves_the_raw_message(cli, emulator, tmp_path):
    m = campaign(emulator)
    target = tmp_path / "lure.eml"
    code, out, _ = cli("mail", "get", "--mailbox", ALICE, "--id", m["id"], "--save-eml", str(target), "--json")
    assert code == 0 and json.loads(out)["savedEml"] == str(target)
    parsed = email.message_from_bytes(target.read_bytes(), policy=policy.default)
    assert parsed["Subject"] == "Storage full" and parsed["Message-ID"] == m["internetMessageId"]
    assert "it@fabrikam.com" in parsed["From"]
    [pdf] = [part for part in parsed.iter_attachments() if (part.get_filename() or "").endswith("invoice.pdf")]
    assert pdf.get_content() == INVOICE


def test_attachments_lists_nested_ones_with_hashes_and_saves_them_safely(cli, emulator, tmp_path):
    m = campaign(emulator)
    code, out, _ = cli("mail", "attachments", "--mailbox", ALICE, "--id", m["id"], "--json",
                       "--save", str(tmp_path / "evidence"))
    rows = {r["path"]: r for r in json.loads(out)}
    assert code == 0 and set(rows) == {"../../invoice.pdf", "Shared document", "Shared document › payload.html"}
    assert rows["../../invoice.pdf"]["sha256"] == hashlib.sha256(INVOICE).hexdigest()
    assert rows["../../invoice.pdf"]["size"] == len(INVOICE) and rows["../../invoice.pdf"]["kind"] == "file"
    nested = rows["Shared document › payload.html"]
    assert nested["sha256"] == hashlib.sha256(PAYLOAD).hexdigest() and nested["contentType"] == "text/html"
    assert rows["Shared document"]["kind"] == "item" and len(rows["Shared document"]["sha256"]) == 64
    saved = sorted(os.listdir(tmp_path / "evidence"))
    assert saved == ["Shared_document.eml", "invoice.pdf", "payload.html"]  # no '../': it stays in the folder
    assert (tmp_path / "evidence" / "invoice.pdf").read_bytes() == INVOICE
    assert (tmp_path / "evidence" / "payload.html").read_bytes() == PAYLOAD
    assert email.message_from_bytes((tmp_path / "evidence" / "Shared_document.eml").read_bytes())["Subject"] == \
        "Fwd: shared document"
    code, out, _ = cli("mail", "attachments", "--mailbox", ALICE, "--id", m["id"], "--table")
    assert code == 0 and "SHA256" in out.splitlines()[0] and hashlib.sha256(INVOICE).hexdigest() in out


def test_safe_names():
    assert safe_name("../../etc/passwd", "file") == "passwd"
    assert safe_name("..\\..\\boot.ini", "file") == "boot.ini"
    assert safe_name(".bashrc", "file") == "bashrc"
    assert safe_name("Re: invoice", "item") == "Re_invoice.eml"


def test_folders_lists_paths_and_counts(cli, emulator):
    emulator.mail.add_message(ALICE, {"subject": "x"})
    code, _, _ = cli("mail", "move", "--mailbox", ALICE, "--id", campaign(emulator)["id"], "--folder", "Inbox/Phish")
    assert code == 0
    code, out, _ = cli("mail", "folders", "--mailbox", ALICE, "--json")
    rows = {r["path"]: r for r in json.loads(out)}
    assert code == 0 and rows["Inbox"]["totalItemCount"] == 1 and rows["Inbox/Phish"]["totalItemCount"] == 1
    assert "Deleted Items" in rows and "Sent Items" in rows
    code, out, _ = cli("mail", "folders", "--mailbox", ALICE, "--table")
    assert "Inbox/Phish" in out and out.splitlines()[0].split() == ["PATH", "TOTALITEMCOUNT", "UNREADITEMCOUNT", "ID"]


def test_search_every_mailbox_by_sender_domain_and_by_recipient(cli, emulator, tmp_path):
    for box in (ALICE, BOB):
        emulator.mail.add_message(box, {"subject": "Invoice", "from": "billing@fabrikam.com"})
    emulator.mail.add_message(BOB, {"subject": "Hi", "from": "ceo@notfabrikam.com"})
    emulator.mail.add_message(SECOPS, {"subject": "Lunch", "from": "colleague@contoso.com",
                                       "to": ["secops@contoso.com"], "cc": ["bob@contoso.com"]})
    for sender in ("fabrikam.com", "*@fabrikam.com", "billing@fabrikam.com"):
        code, out, err = cli("mail", "search", "--all-mailboxes", "--from", sender, "--json")
        assert code == 0, err
        assert sorted((r["mailbox"], r["subject"]) for r in json.loads(out)) == [(ALICE, "Invoice"), (BOB, "Invoice")]
    code, out, _ = cli("mail", "search", "--all-mailboxes", "--to", BOB, "--json")  # To, Cc or Bcc
    assert code == 0 and sorted((r["mailbox"], r["subject"]) for r in json.loads(out)) == [
        (BOB, "Hi"), (BOB, "Invoice"), (SECOPS, "Lunch")]
    listed = tmp_path / "boxes.txt"
    listed.write_text(f"# incident\n{BOB}\n")
    code, out, _ = cli("mail", "search", "--mailboxes-file", str(listed), "--from", "fabrikam.com", "--json")
    assert code == 0 and [r["mailbox"] for r in json.loads(out)] == [BOB]


def test_search_reports_an_unreachable_mailbox_and_answers_for_the_others(cli, emulator):
    emulator.mail.add_message(BOB, {"subject": "Invoice", "from": "billing@fabrikam.com"})
    emulator.faults.add(FaultRule(category="graph", status=500, rate=1.0, path=f"/users/{ALICE}/messages"))
    code, out, err = cli("mail", "search", "--mailbox", f"{ALICE},{BOB},gone@contoso.com", "--from", "fabrikam.com",
                         "--table")
    assert code == 1
    assert "Invoice" in out and "1 message(s) in 1 mailbox(es); 2 mailbox(es) could not be searched" in out
    assert f"{ALICE}: not searched: 500" in err and "gone@contoso.com: not searched: 404 ErrorInvalidUser" in err


def test_bad_input_says_what_to_type(cli):
    code, _, err = cli("mail", "search", "--mailbox", ALICE, "--from", "not a domain")
    assert code == 2 and "--from takes a full address (ceo@fabrikam.com) or a domain (fabrikam.com)" in err
    code, _, err = cli("mail", "search", "--from", "fabrikam.com")
    assert code == 2 and "exactly one of --mailbox ADDRESS, --mailboxes-file FILE or --all-mailboxes" in err
    code, _, err = cli("mail", "get", "--mailbox", f"{ALICE},{BOB}", "--id", "AAMk")
    assert code == 2 and "--mailbox takes one address here" in err


def test_send_with_cc_and_bcc_and_reply(cli, emulator):
    code, out, _ = cli("mail", "send", "--mailbox", SECOPS, "--to", ALICE, "--cc", BOB, "--bcc", "ciso@contoso.com",
                       "--subject", "Phishing alert", "--body", "Do not click.", "--json")
    assert code == 0 and json.loads(out)["cc"] == [BOB] and json.loads(out)["bcc"] == ["ciso@contoso.com"]
    emulator.add_user("ciso@contoso.com")  # after sending: Bcc is checked on the sent copy
    [sent] = emulator.mail.user(SECOPS).folder("sentitems").messages.values()
    assert [r["emailAddress"]["address"] for r in sent["ccRecipients"]] == [BOB]
    assert [r["emailAddress"]["address"] for r in sent["bccRecipients"]] == ["ciso@contoso.com"]
    [copy] = emulator.mail.user(BOB).folder("inbox").messages.values()
    assert copy["subject"] == "Phishing alert" and copy["bccRecipients"] == []  # Bcc stays hidden

    m = campaign(emulator)
    code, out, _ = cli("mail", "reply", "--mailbox", ALICE, "--id", m["id"], "--comment", "Reported to security.")
    assert code == 0 and json.loads(out)["action"] == "reply"
    [reply] = emulator.mail.user(ALICE).folder("sentitems").messages.values()
    assert reply["subject"] == "RE: Storage full" and "Reported to security." in reply["body"]["content"]
    assert [r["emailAddress"]["address"] for r in reply["toRecipients"]] == ["it@fabrikam.com"]


def test_search_across_mailboxes_rides_out_throttling_and_pages(cli, emulator):
    for i in range(120):
        emulator.mail.add_message(BOB, {"subject": f"Invoice {i}", "from": "billing@fabrikam.com"})
    emulator.mail.add_message(SECOPS, {"subject": "Invoice x", "from": "billing@fabrikam.com"})
    emulator.faults.add(FaultRule(category="graph", status=429, count=4, retry_after=0, path="/messages"))
    code, out, err = cli("mail", "search", "--all-mailboxes", "--from", "billing@fabrikam.com", "--json")
    assert code == 0, err
    assert sorted(r["subject"] for r in json.loads(out)) == sorted([f"Invoice {i}" for i in range(120)] + ["Invoice x"])
    assert len(emulator.requests(status=429)) == 4  # each answered "later" and retried, nothing lost


def test_attachments_show_progress_on_a_terminal(cli_env, emulator, tmp_path):
    from tests.graphhook.conftest import on_terminal

    m = campaign(emulator)
    code, shown = on_terminal(["mail", "attachments", "--mailbox", ALICE, "--id", m["id"], "--save",
                               str(tmp_path / "evidence")], cli_env, stderr_too=True)
    assert code == 0
    assert "fetching the message and its attachments from Graph" in shown
    assert "3/3 attachments" in shown and "3 attachment(s); saved in" in shown
