"""One output convention for every command: a table for people, ``--json`` for scripts, run as a user runs them."""

from __future__ import annotations

import argparse
import json

from graphhook.cli import build_parser, main
from tests.graphhook.conftest import ALICE, BOB, on_terminal

PROCESSES = {"demo", "web", "worker", "renewer"}  # long-running processes: they log JSON lines, they print no report


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every runnable command line: (path, parser)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from leaves(child, path + (name,))


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert out.startswith("graphhook ") and out.split()[1][0].isdigit()


def test_every_reporting_command_takes_json():
    missing = [" ".join(path) for path, parser in leaves(build_parser())
               if path[0] not in PROCESSES and not any("--json" in a.option_strings for a in parser._actions)]
    assert missing == []


def test_webhooks_stats_says_something_when_empty(cli):
    code, out, _ = cli("webhooks", "stats")
    assert code == 0 and "no webhook deliveries yet" in out
    code, out, _ = cli("webhooks", "stats", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = cli("webhooks", "failed", "--json")
    assert code == 0 and json.loads(out) == []


def test_mailbox_list_with_spaces_is_trimmed(cli, emulator):
    emulator.mail.add_message(BOB, {"subject": "Invoice", "from": "ceo@evil.example"})
    code, out, err = cli("mail", "search", "--mailbox", f"{ALICE}, {BOB}", "--from", "ceo@evil.example", "--json")
    assert code == 0, err
    assert [r["mailbox"] for r in json.loads(out)] == [BOB]
    code, out, err = cli("mail", "get", "--mailbox", f" {BOB} ", "--id", json.loads(out)[0]["id"], "--json")
    assert code == 0 and json.loads(out)["subject"] == "Invoice"


def test_subscriptions_create_refuses_a_mailbox_the_renewer_would_delete(cli, emulator):
    code, out, err = cli("subscriptions", "create", "--mailbox", ALICE)
    assert code == 2 and out == ""
    assert "not under 'mailboxes'" in err and f"address: {ALICE}" in err and "subscriptions reconcile" in err
    assert emulator.subscriptions.items == {}


def test_on_a_terminal_search_prints_a_table_and_json_on_request(cli_env, emulator):
    """The same command under a real pseudo-terminal: a table by default; --json gives JSON there too."""
    emulator.mail.add_message(ALICE, {"subject": "Invoice overdue", "from": "ceo@evil.example"})
    def shown_on_terminal(*argv: str) -> str:
        code, shown = on_terminal(list(argv), cli_env)
        assert code == 0
        return shown

    shown = shown_on_terminal("mail", "search", "--mailbox", ALICE, "--from", "evil.example")
    assert shown.splitlines()[0].split() == ["MAILBOX", "RECEIVEDDATETIME", "FROM", "SUBJECT", "ID"]
    assert "Invoice overdue" in shown and "1 message(s) in 1 mailbox(es)" in shown
    rows = json.loads(shown_on_terminal("mail", "search", "--mailbox", ALICE, "--from", "evil.example", "--json"))
    assert [r["subject"] for r in rows] == ["Invoice overdue"]


def test_check_and_subscriptions_speak_json_too(cli):
    code, out, _ = cli("check", "--config-only", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["results"][0]["status"]
    code, out, _ = cli("subscriptions", "list", "--table")
    assert code == 0 and "no subscriptions" in out
    code, out, _ = cli("subscriptions", "list", "--json")
    assert code == 0 and json.loads(out) == []
