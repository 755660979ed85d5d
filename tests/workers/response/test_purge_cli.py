"""``graphhook purge`` as a responder runs it: refusals, dry runs, reports, exit codes, and a purge killed
mid-way that is resumed and completes without removing anything twice."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from emulator.faults import FaultRule
from emulator.mailstore import User
from graphhook.cli import main
from tests.conftest import ROOT, wait_for
from workers.response import mailops
from workers.response.progress import ProgressBar

CAMPAIGN_ID = "<payroll-update@evil.example>"
CAMPAIGN = {"subject": "Payroll update required", "from": {"name": "HR", "address": "hr@evil.example"},
            "body": "Log in to keep your salary.", "internetMessageId": CAMPAIGN_ID}


@pytest.fixture
def env(emulator, redis_server, redis_client, monkeypatch):
    values = {**emulator.environment(), "REDIS_URL": redis_server.url}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    mailops.forget_folders()
    yield values
    mailops.forget_folders()


@pytest.fixture
def cli(env, capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def seed(emulator, count: int, copies: int = 1) -> list[str]:
    boxes = [f"staff{i:02d}@contoso.com" for i in range(count)]
    for box in boxes:
        emulator.add_user(box)
        emulator.mail.add_message(box, {"subject": "Team lunch", "from": "colleague@contoso.com"})
        for _ in range(copies):
            emulator.mail.add_message(box, CAMPAIGN)
    return boxes


def mailbox_file(tmp_path, boxes: list[str]):
    path = tmp_path / "mailboxes.txt"
    path.write_text("# incident 4711\n" + "\n".join(boxes) + "\n")
    return str(path)


def snapshot(emulator) -> dict[str, dict[str, int]]:
    return {u.mail: {f.display_name: len(f.messages) for f in u.folders.values() if f.messages}
            for u in emulator.mail.users.values()}


def test_50001_mailboxes_refused_with_a_clear_message(cli, emulator, redis_client, tmp_path):
    boxes = [f"m{i:05d}@contoso.com" for i in range(50_001)]
    code, out, err = cli("purge", "--message-id", CAMPAIGN_ID, "--mailboxes-file", mailbox_file(tmp_path, boxes),
                         "--yes")
    assert code == 2 and out == ""
    assert "refusing to purge more than 50,000 mailboxes" in err and "split the mailboxes" in err
    assert emulator.requests(path="/v1.0/") == [] and redis_client.keys("graphhook:purge*") == []


def test_tenant_of_50001_mailboxes_refused_before_any_search(cli, emulator, redis_client):
    # Straight into the store: the emulator's add_user looks for duplicates one by one (quadratic at this size).
    for i in range(50_001):
        user = User(id=f"00000000-0000-4000-8000-{i:012d}", mail=f"m{i:05d}@contoso.com", display_name=f"M {i}")
        emulator.mail.users[user.id] = user
    code, out, err = cli("purge", "--message-id", CAMPAIGN_ID, "--all-mailboxes", "--yes")
    assert code == 2 and out == "" and "refusing to purge more than 50,000 mailboxes" in err
    graph = emulator.requests(path="/v1.0/")
    assert {r["path"] for r in graph} == {"/v1.0/users"} and len(graph) == 51  # listed every page, nothing else
    assert redis_client.keys("graphhook:purge*") == []


def test_dry_run_reports_and_changes_nothing(cli, emulator, tmp_path):
    boxes = seed(emulator, 10, copies=2)
    before = snapshot(emulator)
    code, out, err = cli("purge", "--message-id", CAMPAIGN_ID, "--from", "hr@evil.example", "--since", "1d",
                         "--mailboxes-file", mailbox_file(tmp_path, boxes), "--dry-run")
    report = json.loads(out)
    assert code == 0 and report["dry_run"] is True
    assert report["totals"]["found"] == 20 and report["totals"]["removed"] == 0
    assert {m["status"] for m in report["mailboxes"]} == {"would remove"}
    assert snapshot(emulator) == before
    assert not [r for r in emulator.request_log if r["method"] in ("POST", "DELETE", "PATCH") and "/v1.0/" in r["path"]]
    assert "TOTAL (10 mailboxes)" in err and "[#" not in err  # a summary table; no bar when stderr is not a terminal


def test_partial_failure_exits_1_with_the_reason(cli, emulator):
    boxes = seed(emulator, 2)
    code, out, err = cli("purge", "--subject", "payroll UPDATE required", "--hard", "--quiet", "--yes",
                         "--mailbox", ",".join(boxes), "--mailbox", "gone@contoso.com")
    report = json.loads(out)
    assert code == 1 and report["mode"] == "hard" and report["totals"]["removed"] == 2
    [failed] = [m for m in report["mailboxes"] if m["status"] == "failed"]
    assert failed["mailbox"] == "gone@contoso.com" and "ErrorInvalidUser" in failed["why"][0]
    assert "TOTAL" not in err  # --quiet: no table


def test_every_mailbox_in_the_tenant(cli, emulator):
    seed(emulator, 15)
    code, out, _ = cli("purge", "--message-id", CAMPAIGN_ID, "--all-mailboxes", "--quiet", "--yes")
    report = json.loads(out)
    assert code == 0 and report["totals"]["mailboxes"] == 15 and report["totals"]["removed"] == 15


def test_resume_takes_nothing_but_the_id(cli):
    code, _, err = cli("purge", "--resume", "20260101T000000Z-abcdef", "--from", "x@y.z")
    assert code == 2 and "--resume continues a saved purge" in err
    code, _, err = cli("purge", "--resume", "20260101T000000Z-abcdef")
    assert code == 2 and "no purge '20260101T000000Z-abcdef'" in err


def test_killed_purge_resumes_and_completes_without_double_deletes(cli, env, emulator, tmp_path):
    boxes = seed(emulator, 16, copies=3)
    slow = emulator.faults.add(FaultRule(category="graph", status=None, delay=0.2, rate=1.0, path=r"/move$"))
    log = open(tmp_path / "purge.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphhook", "purge", "--message-id", CAMPAIGN_ID, "--concurrency", "2", "--yes",
         "--mailboxes-file", mailbox_file(tmp_path, boxes)],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_for(lambda: len(emulator.requests("POST", "/move", status=201)) >= 8, timeout=60)
        proc.send_signal(signal.SIGKILL)  # no chance to record anything more
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    emulator.faults.remove(slow)
    # Removals the killed run had sent still finish at Graph; the responder resumes after they have.
    wait_for(lambda: emulator.throttle.in_flight() == 0, timeout=30)
    log.seek(0)
    purge_id = re.search(r"graphhook purge --resume (\S+)\)", log.read()).group(1)
    done_before = len(emulator.requests("POST", "/move", status=201))
    assert 8 <= done_before < 48  # interrupted mid-way

    code, out, err = cli("purge", "--resume", purge_id)
    report = json.loads(out)
    assert code == 0 and report["purge_id"] == purge_id and report["totals"]["removed"] == 48
    for box in boxes:
        user = emulator.mail.user(box)
        assert [m["subject"] for m in user.folder("inbox").messages.values()] == ["Team lunch"]
        assert len(user.folder("deleteditems").messages) == 3
    moves = [r["path"] for r in emulator.requests("POST", "/move", status=201)]
    assert len(moves) == len(set(moves)) == 48  # every copy moved exactly once, across both runs


def test_ctrl_c_stops_cleanly_with_a_partial_report_and_a_resume_hint(cli, env, emulator, tmp_path):
    boxes = seed(emulator, 8, copies=3)
    slow = emulator.faults.add(FaultRule(category="graph", status=None, delay=0.2, rate=1.0, method="DELETE",
                                         path=r"/messages/[^/]+$"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphhook", "purge", "--message-id", CAMPAIGN_ID, "--concurrency", "2", "--hard",
         "--yes", "--mailbox", ",".join(boxes)],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(emulator.requests("DELETE", "/messages/")) >= 4, timeout=60)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    emulator.faults.remove(slow)
    report = json.loads(out)
    assert proc.returncode == 130 and report["interrupted"] is True
    assert 4 <= report["totals"]["removed"] < 24  # what was done before the stop is reported
    assert f"graphhook purge --resume {report['purge_id']}" in err.splitlines()[-1]

    code, out, _ = cli("purge", "--resume", report["purge_id"], "--quiet")
    assert code == 0 and json.loads(out)["totals"]["removed"] == 24
    deletes = [r["path"] for r in emulator.requests("DELETE", "/messages/", status=204)]
    assert len(deletes) == len(set(deletes)) == 24
    assert all(len(emulator.mail.user(b).folder("inbox").messages) == 1 for b in boxes)


def test_progress_bar_draws_on_a_terminal_only():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen, pipe = Terminal(), io.StringIO()
    for stream in (screen, pipe):
        bar = ProgressBar(stream, width=10)
        bar({"done": 5, "total": 10, "found": 7, "removed": 6, "failed": 1})
        bar({"done": 10, "total": 10, "found": 12, "removed": 11, "failed": 1})
        bar.close()
    assert screen.getvalue().endswith("\r[##########] 10/10 mailboxes  found 12  removed 11  failed 1\n")
    assert pipe.getvalue() == ""
    quiet = Terminal()
    ProgressBar(quiet, enabled=False)({"done": 1, "total": 1})
    assert quiet.getvalue() == ""


def test_dry_run_json_lists_every_message_that_would_go(cli, emulator):
    boxes = seed(emulator, 3, copies=2)
    code, out, err = cli("purge", "--from", "evil.example", "--mailbox", ", ".join(boxes), "--dry-run", "--json")
    report = json.loads(out)
    assert code == 0 and "TOTAL" not in err  # --json: the report alone
    listed = sorted((m["mailbox"], m["subject"]) for m in report["messages"])
    assert listed == sorted((box, CAMPAIGN["subject"]) for box in boxes for _ in range(2))
    stored = {m["_immutableId"] for box in boxes for m in emulator.mail.user(box).folder("inbox").messages.values()
              if m["subject"] == CAMPAIGN["subject"]}  # graphhook asks for immutable ids (docs/conformance.md)
    assert {m["id"] for m in report["messages"]} == stored and all(m["receivedDateTime"] for m in report["messages"])
    code, out, _ = cli("purge", "--from", "evil.example", "--mailbox", boxes[0], "--dry-run", "--table")
    assert code == 0 and "2 message(s) would be removed." in out and "TOTAL (1 mailboxes)" in out


def test_a_real_purge_without_a_terminal_needs_yes(cli, emulator):
    boxes = seed(emulator, 2)
    before = snapshot(emulator)
    code, out, err = cli("purge", "--message-id", CAMPAIGN_ID, "--mailbox", ",".join(boxes))
    assert code == 2 and out == "" and "add --yes" in err
    assert snapshot(emulator) == before and emulator.requests(path="/v1.0/") == []


@pytest.mark.parametrize("answer,removed", [("no", False), ("yes", True)])
def test_a_real_purge_asks_on_a_terminal(env, emulator, answer, removed):
    import pty

    boxes = seed(emulator, 2)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "graphhook", "purge", "--message-id", CAMPAIGN_ID, "--quiet",
                             "--mailbox", ",".join(boxes), "--json"],
                            env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdin=follower, stderr=follower,
                            stdout=subprocess.PIPE, text=True)
    os.close(follower)
    seen = b""
    try:
        while b"Type 'yes'" not in seen:
            seen += os.read(leader, 4096)
        assert b"move to Deleted Items" in seen and b"in 2 mailbox(es)" in seen
        os.write(leader, f"{answer}\n".encode())
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    inbox = [len(emulator.mail.user(b).folder("inbox").messages) for b in boxes]
    if removed:
        assert proc.returncode == 0 and json.loads(out)["totals"]["removed"] == 2 and inbox == [1, 1]
    else:
        assert proc.returncode == 2 and out == "" and inbox == [2, 2]
