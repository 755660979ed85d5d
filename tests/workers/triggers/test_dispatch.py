"""The whole chain with rules: emulator → receiver → real `graphhook worker` → rules → Graph actions and a
signed insightconnect webhook, checked in the mailboxes and at a real HTTP sink."""

from __future__ import annotations

import base64
import json
import textwrap

from emulator.seed import PHISHING
from graphhook.core import keys
from tests.conftest import ROOT, wait_for
from tests.workers.sink import Sink
from workers import runtime
from workers.subscriptions import operations
from workers.triggers import webhooks
from workers.triggers.config import parse_config
from workers.triggers.engine import evaluate

SECRET = "whsec-e2e-0123456789abcdef012345"


def test_seeded_phish_is_quarantined_forwarded_and_sent_to_soar(emulator, live_settings, redis_client, start_worker,
                                                                 tmp_path, monkeypatch):
    for address in ("alice@contoso.com", "secops@contoso.com"):
        emulator.add_user(address)
    sink = Sink().start()
    config = tmp_path / "graphhook.yaml"
    config.write_text(textwrap.dedent(f"""
        mailboxes: [alice@contoso.com]
        webhooks:
          soar: {{url: "{sink.url}", secret_env: E2E_WEBHOOK_SECRET, format: insightconnect,
                  include_content: true, backoff: [1, 2]}}
        rules:
          - name: quarantine-phishing
            when:
              all:
                - authentication: {{dmarc: fail}}
                - any: [{{link_mismatch: true}}, {{attachment: {{extension: html}}}}]
            actions:
              - move: Quarantine
              - forward: {{to: [secops@contoso.com], comment: "graphhook quarantined this."}}
              - webhook: soar
            stop: true
          - name: everything-else
            when: always
            actions: [{{categorise: Seen}}]
    """))
    monkeypatch.setenv("GRAPHHOOK_CONFIG", str(config))
    monkeypatch.setenv("E2E_WEBHOOK_SECRET", SECRET)
    try:
        ctx = runtime.build(live_settings, redis_client)
        operations.create(ctx.graph, redis_client, live_settings, "alice@contoso.com", "inbox")
        start_worker()
        phish = emulator.deliver("alice@contoso.com", PHISHING)
        ordinary = emulator.deliver("alice@contoso.com", {"subject": "Lunch?", "body": "Friday?",
                                                          "from": {"name": "Carol", "address": "carol@fabrikam.com"}})
        wait_for(lambda: sink.requests, timeout=60)
        events = wait_for(lambda: len(redis_client.lrange(keys.EVENTS, 0, -1)) == 2 and redis_client.lrange(keys.EVENTS, 0, -1), timeout=60)
    finally:
        sink.stop()
    alice = emulator.mail.user("alice@contoso.com")
    by_folder = {f.display_name: {m["subject"]: m for m in f.messages.values()} for f in alice.folders.values()}
    assert list(by_folder["Quarantine"]) == [PHISHING["subject"]]
    wait_for(lambda: alice.find_message(ordinary["id"])[1]["categories"] == ["Seen"], timeout=30)
    assert list(by_folder["Inbox"]) == ["Lunch?"]
    secops_inbox = emulator.mail.user("secops@contoso.com").folder("inbox").messages.values()
    assert [m["subject"] for m in secops_inbox] == [f"FW: {PHISHING['subject']}"]

    fired = {json.loads(e)["email"]["subject"]: json.loads(e)["rules"] for e in events}
    assert fired == {PHISHING["subject"]: ["quarantine-phishing"], "Lunch?": ["everything-else"]}

    [request] = sink.requests
    webhooks.verify(request.body, request.headers["X-Graphhook-Signature"], secret=SECRET)
    body = json.loads(request.body)["icon_email"]  # the plugin's trigger output: one field, icon_email
    quarantined = next(iter(by_folder["Quarantine"].values()))
    assert body["account"] == "alice@contoso.com" and body["id"] == quarantined["_immutableId"]
    # An immutable id: the SOAR can act on the message where it is, and the id did not change with the move.
    assert body["id"] == phish["_immutableId"] and alice.find_message(body["id"])[0].display_name == "Quarantine"
    assert body["sender"] == PHISHING["from"]["address"] and body["has_attachments"] is True
    [attached] = body["attached_files"]
    assert attached["file_name"] == "Storage_Upgrade.html" and attached["content_type"] == "text/html"
    assert base64.b64decode(attached["content"]) == PHISHING["attachments"][0]["content"]


def test_example_rules_fire_on_seeded_phish_only():
    """The shipped example's first rule catches the seeded phishing sample and not ordinary mail."""

    import yaml

    from emulator.seed import ORDINARY

    data = yaml.safe_load((ROOT / "graphhook.example.yaml").read_text())
    config = parse_config(data, "graphhook.example.yaml", env={"SOAR_WEBHOOK_SECRET": SECRET})

    def record(spec):
        return {"mailbox": "alice@contoso.com", "subject": spec["subject"], "from": spec["from"],
                "bodyHtml": spec.get("html"), "bodyText": spec.get("body"),
                "authentication": {"spf": "fail", "dkim": "fail", "dmarc": "fail"} if spec is PHISHING else
                {"spf": "pass", "dkim": "pass", "dmarc": "pass"},
                "urls": [], "attachments": [{"name": a["name"], "extension": a["name"].rsplit(".", 1)[-1],
                                              "kind": "file", "size": len(a["content"])}
                                             for a in spec.get("attachments", [])]}

    assert [r.name for r in evaluate(config, record(PHISHING))] == ["quarantine-phishing"]
    assert [r.name for r in evaluate(config, record(ORDINARY[0]))] == []
    # The rule's own forward (from the internal mailbox, no authentication results) must not match again.
    forwarded = {**PHISHING, "subject": "FW: " + PHISHING["subject"], "from": {"name": "Alice", "address": "alice@contoso.com"}}
    assert [r.name for r in evaluate(config, {**record(forwarded), "authentication": None})] == []


def test_summary_lists_which_rules_fired_on_which_messages():
    from workers.triggers.engine import summarise

    events = [{"rules": ["quarantine-phishing"], "email": {"subject": "Storage full"}},
              {"rules": [], "email": {"subject": "Lunch?"}},
              {"rules": ["tag-invoices"], "dryRun": ["tag-invoices"], "email": {"subject": "Invoice 7"}},
              {"rules": ["quarantine-phishing"], "email": {"subject": "Password expires"}}]
    assert summarise(events) == ["quarantine-phishing: 2 message(s): 'Storage full', 'Password expires'",
                                 "tag-invoices (dry-run): 1 message(s): 'Invoice 7'"]


def test_rules_test_command_shows_what_would_fire(tmp_path, monkeypatch, capsys):
    from graphhook.cli import main

    config = tmp_path / "graphhook.yaml"
    config.write_text("rules:\n  - {name: phish, when: {subject: storage}, actions: [{move: Quarantine}], stop: true}\n"
                      "  - {name: other, when: always}\n")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"trigger": "record", "email": {"schema": "graphhook.email/1",
                                                                 "subject": PHISHING["subject"], "from": PHISHING["from"]}}))
    monkeypatch.setenv("GRAPHHOOK_CONFIG", str(config))
    assert main(["rules", "test", str(event)]) == 0
    out = capsys.readouterr().out
    assert "1 of 2 rule(s) match" in out and "phish (stop)" in out and "- move to 'Quarantine'" in out
    event.write_text(json.dumps({"schema": "graphhook.email/1", "subject": "Lunch?",
                                 "from": {"name": "C", "address": "c@x.example"}}))
    assert main(["rules", "test", str(event)]) == 0  # 'other' matches every message
    assert "1 of 2 rule(s) match" in capsys.readouterr().out
    config.write_text("rules:\n  - {name: phish, when: {subject: storage}}\n")
    assert main(["rules", "test", str(event)]) == 1  # nothing matches
