"""Rule actions against the real emulator over HTTPS: what the users would see, and no double sends on retry."""

from __future__ import annotations

import base64
import json
import logging
import os
import textwrap

import pytest

from emulator.faults import FaultRule
from emulator.seed import PHISHING
from graphhook.core import jobformat, keys
from tests.conftest import InProcessWorker
from tests.workers.sink import Sink
from tests.workers.triggers import handler_sample
from workers import runtime
from workers.records.messages import Fetcher
from workers.response import mailops
from workers.triggers import webhooks
from workers.triggers.actions import marker_key
from workers.triggers.config import config_for
from workers.triggers.dispatch import dispatch

QUEUE = "graphhook-action-tests"
SECRET = "whsec-actions-0123456789abcdef"
QUARANTINE_RULE = """
rules:
  - name: quarantine
    when: {all: [{sender_domain: "*.example.net"}, {authentication: {dmarc: fail}}]}
    actions:
      - move: Quarantine
      - categorise: [Phishing]
      - forward: {to: [secops@contoso.com], comment: "Quarantined by $rule: $subject"}
"""


@pytest.fixture
def world(settings, redis_client, emulator, tmp_path, monkeypatch):
    """Users in the emulator, a worker context whose config file ``world.configure`` writes."""
    for address in ("alice@contoso.com", "bob@contoso.com", "secops@contoso.com"):
        emulator.add_user(address)
    mailops.forget_folders()
    monkeypatch.setenv("ACTIONS_SECRET", SECRET)
    path = tmp_path / "graphhook.yaml"
    path.write_text("")
    ctx = runtime.build(settings.replace(config_path=str(path), queue_name=QUEUE), redis_client)
    monkeypatch.setattr(runtime, "_context", ctx)
    monkeypatch.setattr(runtime, "_pid", os.getpid())

    def configure(text: str) -> None:
        path.write_text(textwrap.dedent(text))
        os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1_000_000))  # a new mtime even within one tick
        config_for(str(path))

    ctx.configure = configure
    yield ctx
    mailops.forget_folders()


def record_for(ctx, mailbox: str, message_id: str) -> dict:
    """The email record, produced by the real fetch code."""
    fetcher = Fetcher(ctx.graph, mailbox)
    try:
        return fetcher.record(message_id, mailbox=mailbox, folder="inbox")
    finally:
        fetcher.close()


def folders(emulator, mailbox: str) -> dict[str, list[str]]:
    user = emulator.mail.user(mailbox)
    return {f.display_name: sorted(m["subject"] for m in f.messages.values()) for f in user.folders.values() if f.messages}


def only_message(emulator, mailbox: str, folder: str) -> dict:
    user = emulator.mail.user(mailbox)
    [message] = [m for f in user.folders.values() if f.display_name.lower() == folder.lower() for m in f.messages.values()]
    return message


def drain(redis_client) -> None:
    InProcessWorker([jobformat.queue(QUEUE, redis_client)], connection=redis_client).work(burst=True)


def phish(emulator, ctx) -> dict:
    message = emulator.deliver("alice@contoso.com", PHISHING)
    return record_for(ctx, "alice@contoso.com", message["id"])


def test_phishing_sample_is_quarantined_and_forwarded_once_across_retries(world, emulator, redis_client):
    world.configure(QUARANTINE_RULE)
    record = phish(emulator, world)
    assert dispatch(world, record) == 2  # the record trigger and the rule
    dispatch(world, record)  # the job is retried: same record, same original id
    alice = folders(emulator, "alice@contoso.com")
    assert alice["Quarantine"] == [PHISHING["subject"]] and "Inbox" not in alice
    assert only_message(emulator, "alice@contoso.com", "Quarantine")["categories"] == ["Phishing"]
    forwarded = folders(emulator, "secops@contoso.com")["Inbox"]
    assert forwarded == [f"FW: {PHISHING['subject']}"]
    assert f"Quarantined by quarantine: {PHISHING['subject']}" in only_message(emulator, "secops@contoso.com", "inbox")["body"]["content"]
    events = [json.loads(e) for e in redis_client.lrange(keys.EVENTS, 0, -1)]
    assert [e["rules"] for e in events] == [["quarantine"]]  # the record trigger fired once too


def test_crash_between_move_and_marker_finds_the_moved_message(world, emulator, redis_client):
    world.configure(QUARANTINE_RULE)
    record = phish(emulator, world)
    # An earlier attempt moved the message and died before recording the move's result.
    mailops.move(world.graph, "alice@contoso.com", record["id"], "Quarantine")
    redis_client.set(marker_key("alice@contoso.com", record["id"], "rule:quarantine", "0", "move"), "pending")
    dispatch(world, record)
    alice = folders(emulator, "alice@contoso.com")
    assert alice["Quarantine"] == [PHISHING["subject"]] and "Inbox" not in alice
    assert only_message(emulator, "alice@contoso.com", "Quarantine")["categories"] == ["Phishing"]
    assert len(folders(emulator, "secops@contoso.com")["Inbox"]) == 1


def test_interrupted_forward_is_never_repeated(world, emulator, redis_client, caplog):
    world.configure(QUARANTINE_RULE)
    record = phish(emulator, world)
    # An earlier attempt started the forward and died before recording it: it may have been sent.
    redis_client.set(marker_key("alice@contoso.com", record["id"], "rule:quarantine", "2", "forward"), "pending")
    with caplog.at_level(logging.WARNING):
        dispatch(world, record)
    assert "Inbox" not in folders(emulator, "secops@contoso.com")
    assert "not repeating forward to secops@contoso.com" in caplog.text


def test_graph_error_is_retried_by_resume_job_without_repeating_done_actions(world, emulator, redis_client):
    world.configure(QUARANTINE_RULE)
    record = phish(emulator, world)
    emulator.faults.add(FaultRule(status=500, count=1, path="/forward$"))
    dispatch(world, record)
    assert "Inbox" not in folders(emulator, "secops@contoso.com")  # the forward failed
    assert jobformat.queue(QUEUE, redis_client).count == 1  # a resume job waits
    drain(redis_client)
    alice = folders(emulator, "alice@contoso.com")
    assert alice["Quarantine"] == [PHISHING["subject"]] and "Inbox" not in alice  # moved once
    assert folders(emulator, "secops@contoso.com")["Inbox"] == [f"FW: {PHISHING['subject']}"]


def test_dry_run_logs_and_changes_nothing(world, emulator, caplog):
    world.configure(QUARANTINE_RULE.replace("  - name: quarantine\n", "  - name: quarantine\n    dry_run: true\n"))
    record = phish(emulator, world)
    with caplog.at_level(logging.INFO):
        dispatch(world, record)
    assert folders(emulator, "alice@contoso.com") == {"Inbox": [PHISHING["subject"]]}
    assert not emulator.mail.user("secops@contoso.com").visible_messages()
    assert "dry-run: rule 'quarantine' would move to 'Quarantine'" in caplog.text
    assert "would forward to secops@contoso.com" in caplog.text


def test_rules_in_order_and_stop(world, emulator, redis_client):
    world.configure("""
        rules:
          - {name: tag, when: {subject: storage}, actions: [{categorise: First}]}
          - {name: flag-and-stop, when: always, actions: [{flag: true}], stop: true}
          - {name: never, when: always, actions: [{categorise: Never}]}
    """)
    record = phish(emulator, world)
    assert dispatch(world, record) == 3
    message = only_message(emulator, "alice@contoso.com", "inbox")
    assert message["categories"] == ["First"] and message["flag"]["flagStatus"] == "flagged"
    assert redis_client.hgetall("graphhook:rules:stats") == {b"tag": b"1", b"flag-and-stop": b"1"}
    dispatch(world, record)  # a retried job dispatches the same message again: nothing is counted twice
    assert redis_client.hgetall("graphhook:rules:stats") == {b"tag": b"1", b"flag-and-stop": b"1"}
    assert redis_client.llen("graphhook:events") == 1


def test_mark_read_copy_reply_alert_and_soft_delete(world, emulator):
    world.configure("""
        alerts: {from: secops@contoso.com}
        rules:
          - name: all-the-rest
            when: {sender: bob@contoso.com}
            actions:
              - mark_read: true
              - copy: Evidence
              - reply: "We have received your message about $subject."
              - alert: {to: [secops@contoso.com], subject: "Rule $rule matched: $subject"}
              - delete: soft
    """)
    message = emulator.deliver("alice@contoso.com", {"subject": "Quarterly report", "body": "see attached",
                                                     "from": {"name": "Bob", "address": "bob@contoso.com"}})
    dispatch(world, record_for(world, "alice@contoso.com", message["id"]))
    alice = folders(emulator, "alice@contoso.com")
    assert alice["Evidence"] == ["Quarterly report"] and alice["Deleted Items"] == ["Quarterly report"]
    assert "Inbox" not in alice
    assert only_message(emulator, "alice@contoso.com", "Deleted Items")["isRead"] is True
    assert folders(emulator, "bob@contoso.com")["Inbox"] == ["RE: Quarterly report"]
    assert folders(emulator, "secops@contoso.com")["Inbox"] == ["Rule all-the-rest matched: Quarterly report"]


def test_mark_unread_and_hard_delete(world, emulator):
    world.configure("""
        rules:
          - {name: unread, when: {subject: "^keep"}, actions: [{mark_unread: true}]}
          - {name: remove, when: {subject: "^drop"}, actions: [{delete: hard}]}
    """)
    keep = emulator.deliver("alice@contoso.com", {"subject": "keep me", "body": "x", "isRead": True})
    drop = emulator.deliver("alice@contoso.com", {"subject": "drop me", "body": "x"})
    for m in (keep, drop):
        dispatch(world, record_for(world, "alice@contoso.com", m["id"]))
    user = emulator.mail.user("alice@contoso.com")
    assert [m["subject"] for m in user.visible_messages()] == ["keep me"]
    assert user.visible_messages()[0]["isRead"] is False


def test_webhook_action_sends_signed_event_with_the_moved_id(world, emulator, redis_client):
    sink = Sink().start()
    try:
        world.configure(f"""
            webhooks:
              soar: {{url: "{sink.url}", secret_env: ACTIONS_SECRET, backoff: [0]}}
            rules:
              - name: quarantine
                when: {{link_mismatch: true}}
                actions: [{{move: Quarantine}}, {{webhook: soar}}]
        """)
        record = phish(emulator, world)
        dispatch(world, record)
        dispatch(world, record)  # retried job: no second event
        drain(redis_client)
    finally:
        sink.stop()
    assert len(sink.requests) == 1
    got = sink.requests[0]
    webhooks.verify(got.body, got.headers["X-Graphhook-Signature"], secret=SECRET)
    event = json.loads(got.body)
    moved = only_message(emulator, "alice@contoso.com", "Quarantine")
    assert event["email"]["id"] == moved["_immutableId"] and event["email"]["originalId"] == record["id"]
    assert event["rule"] == "quarantine" and event["email"]["subject"] == PHISHING["subject"]


def test_handler_gets_record_and_its_api_actions_are_idempotent(world, emulator):
    handler_sample.CALLS.clear()
    world.configure("""
        handlers:
          triage: {path: "tests.workers.triggers.handler_sample:on_email"}
        rules:
          - {name: triage, when: always, actions: [{handler: triage}]}
    """)
    record = phish(emulator, world)
    dispatch(world, record)
    dispatch(world, record)
    assert handler_sample.CALLS == [PHISHING["subject"]]
    assert only_message(emulator, "alice@contoso.com", "inbox")["categories"] == ["Handled"]
    assert folders(emulator, "secops@contoso.com")["Inbox"] == [f"FW: {PHISHING['subject']}"]


def test_failing_handler_is_retried_by_resume_job(world, emulator, redis_client):
    handler_sample.CALLS.clear()
    world.configure("""
        handlers:
          broken: {path: "tests.workers.triggers.handler_sample:failing", all_mail: true}
    """)
    record = phish(emulator, world)
    dispatch(world, record)
    assert handler_sample.CALLS == ["failing"]
    assert jobformat.queue(QUEUE, redis_client).count == 1
    drain(redis_client)  # the resume job calls it again, fails, and is scheduled for a later retry
    assert handler_sample.CALLS == ["failing", "failing"]


def test_webhook_content_is_base64_within_the_size_cap(world, emulator):
    from workers.triggers.insightconnect import insightconnect_event

    inner = {"subject": "original invoice", "body": "see pdf", "from": {"name": "V", "address": "v@vendor.example"},
             "attachments": [{"kind": "file", "name": "invoice.pdf", "contentType": "application/pdf",
                              "content": b"%PDF-1.4 fake"}]}
    message = emulator.deliver("alice@contoso.com", {
        "subject": "Fwd: invoice", "body": "please pay", "from": {"name": "M", "address": "m@evil.example"},
        "attachments": [{"kind": "file", "name": "small.txt", "contentType": "text/plain", "content": b"tiny"},
                        {"kind": "file", "name": "big.bin", "content": b"x" * 4096},
                        {"kind": "item", "name": "original invoice", "item": inner}]})
    record = record_for(world, "alice@contoso.com", message["id"])
    email = webhooks.attach_content(world.graph, record, max_bytes=1024)
    by_name = {a["name"]: a for a in email["attachments"]}
    assert by_name["small.txt"]["contentBytes"] == "dGlueQ=="
    assert by_name["big.bin"]["contentOmitted"] == "size_cap" and "contentBytes" not in by_name["big.bin"]
    # The file inside the attached email (a user reporting phish "as attachment") comes with its content too.
    [nested] = by_name["original invoice"]["email"]["attachments"]
    assert nested["name"] == "invoice.pdf" and base64.b64decode(nested["contentBytes"]) == b"%PDF-1.4 fake"
    out = insightconnect_event(email)["icon_email"]
    flattened = {f["file_name"]: f["content"] for f in out["flattened_attached_files"]}
    assert flattened["small.txt"] == "dGlueQ==" and flattened["big.bin"] == ""
    assert base64.b64decode(flattened["invoice.pdf"]) == b"%PDF-1.4 fake"
    assert [e["subject"] for e in out["attached_emails"]] == ["original invoice"]
    assert "contentBytes" not in json.dumps(record)  # the record itself is left untouched


def test_forward_whose_answer_was_lost_is_not_sent_again(world, emulator, redis_client, caplog, monkeypatch):
    """At most once: the forward's answer never arrives (read timeout) though Graph did forward; retries
    must not forward a second time."""
    from tests.conftest import wait_for

    world.configure(QUARANTINE_RULE)
    record = phish(emulator, world)
    send = world.graph.session.request

    def request(method, url, **kwargs):  # only the forward gets a short read timeout (s)
        if url.endswith("/forward"):
            kwargs["timeout"] = (5.0, 0.5)
        return send(method, url, **kwargs)

    monkeypatch.setattr(world.graph.session, "request", request)
    emulator.faults.add(FaultRule(status=None, delay=1.5, count=1, path="/forward$"))
    dispatch(world, record)  # move and categorise succeed; the forward times out on our side
    wait_for(lambda: "Inbox" in folders(emulator, "secops@contoso.com"), timeout=10)  # …but Graph did it
    with caplog.at_level(logging.WARNING):
        drain(redis_client)  # the resume job
    assert folders(emulator, "secops@contoso.com")["Inbox"] == [f"FW: {PHISHING['subject']}"]
    assert folders(emulator, "alice@contoso.com")["Quarantine"] == [PHISHING["subject"]]
    assert "not repeating forward to secops@contoso.com" in caplog.text


def test_nothing_happened_policy():
    from graphhook.core.errors import GraphError
    from workers.triggers.actions import nothing_happened

    refused, dropped = GraphError(500, "InternalServerError", "x"), GraphError(0, "ConnectionError", "x")
    assert nothing_happened("forward", refused) and not nothing_happened("forward", dropped)
    assert nothing_happened("move", dropped) and nothing_happened("categorise", KeyboardInterrupt())
    assert not nothing_happened("alert", TimeoutError()) and not nothing_happened("reply", SystemExit())
    assert nothing_happened("handler", RuntimeError()) and not nothing_happened("handler", SystemExit())
