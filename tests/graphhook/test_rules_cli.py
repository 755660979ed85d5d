"""``graphhook rules test`` as a responder uses it: on a real message id (fetch → record → rules, nothing done),
and refusing a file that is not an email record."""

from __future__ import annotations

import json

import pytest

from tests.graphhook.conftest import ALICE

CONFIG = """
mailboxes: [alice@contoso.com]
rules:
  - name: quarantine-phishing
    when:
      all:
        - not: {sender_domain: [contoso.com]}
        - any:
            - authentication: {dmarc: [fail]}
            - link_mismatch: true
        - subject: "storage"
    actions:
      - move: Quarantine
      - categorise: [Phishing]
    stop: true
  - name: tag-everything
    when: always
    actions: [{categorise: [Seen]}]
  - name: invoices
    when: {subject: invoice}
"""
LURE = '<p><a href="https://login-micros0ft-support.example.net/x">https://portal.office.com/storage</a></p>'


@pytest.fixture
def rules_cli(cli, cli_env, tmp_path):
    with open(cli_env["GRAPHHOOK_CONFIG"], "w") as fh:
        fh.write(CONFIG)
    return cli


def test_rules_test_on_a_message_id_says_what_would_fire_and_why_acting_on_nothing(rules_cli, emulator):
    m = emulator.mail.add_message(ALICE, {"subject": "Storage full", "from": "it@fabrikam.com", "html": LURE})[2]
    code, out, _ = rules_cli("rules", "test", "--mailbox", ALICE, "--id", m["id"], "--json")
    report = json.loads(out)
    assert code == 0 and report["matched"] == ["quarantine-phishing"]
    assert report["message"]["from"] == "it@fabrikam.com" and report["message"]["folder"] == "Inbox"
    phish, everything, invoices = report["rules"]
    why = {w["path"]: w["held"] for w in phish["why"]}
    assert why["when.all[1].any[1].link_mismatch"] is True and why["when.all[1].any[0].authentication"] is False
    assert why["when.all[0].not"] is True and why["when.all[2].subject"] is True
    assert everything["matches"] is True and everything["runs"] is False  # the stop rule ends evaluation
    assert invoices["matches"] is False and phish["actions"] == ["move to 'Quarantine'", "categorise Phishing"]
    graph = [r["method"] for r in emulator.requests(path="/v1.0/")]
    assert graph and set(graph) == {"GET"}  # read only
    assert list(emulator.mail.user(ALICE).folder("inbox").messages) == [m["id"]] and m["categories"] == []

    code, out, _ = rules_cli("rules", "test", "--mailbox", ALICE, "--id", m["id"], "--table")
    assert code == 0 and "1 of 3 rule(s) match (nothing was done)" in out
    assert "quarantine-phishing (stop): would run" in out and "- move to 'Quarantine'" in out
    assert "tag-everything: matches, but an earlier rule stops" in out
    [line] = [line for line in out.splitlines() if "link_mismatch" in line]
    assert line.split()[0] == "yes"


def test_a_file_that_is_not_an_email_record_is_refused(rules_cli, emulator, tmp_path):
    m = emulator.mail.add_message(ALICE, {"subject": "Storage full", "from": "it@fabrikam.com", "html": LURE})[2]
    code, out, _ = rules_cli("mail", "get", "--mailbox", ALICE, "--id", m["id"], "--json")
    graph_message = tmp_path / "message.json"
    graph_message.write_text(out)
    code, out, err = rules_cli("rules", "test", str(graph_message))
    assert code == 2 and out == ""
    assert "is not an email record: it is a Graph message" in err and "rules test --mailbox ADDRESS --id" in err
    other = tmp_path / "other.json"
    other.write_text('{"subject": "Storage full"}')
    code, _, err = rules_cli("rules", "test", str(other))
    assert code == 2 and 'no "schema": "graphhook.email/1"' in err
    other.write_text("not json")
    code, _, err = rules_cli("rules", "test", str(other))
    assert code == 2 and "is not JSON" in err
    code, _, err = rules_cli("rules", "test")
    assert code == 2 and "give a message (--mailbox ADDRESS --id MESSAGE_ID) or a record FILE" in err


def test_a_saved_record_gives_the_same_answer(rules_cli, emulator, tmp_path):
    m = emulator.mail.add_message(ALICE, {"subject": "Invoice 7", "from": "billing@fabrikam.com"})[2]
    from graphhook.commands.rules import _fetch
    from graphhook.core.settings import Settings

    record = _fetch(Settings.from_env(), ALICE, m["id"], None)
    saved = tmp_path / "record.json"
    saved.write_text(json.dumps({"trigger": "record", "email": record}))
    code, out, _ = rules_cli("rules", "test", str(saved), "--json")
    assert code == 0 and json.loads(out)["matched"] == ["tag-everything", "invoices"]
