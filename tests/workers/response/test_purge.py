"""Search-and-purge against the real emulator over HTTPS and real Redis, judged by what is left in the mailboxes."""

from __future__ import annotations

import re

import pytest

from emulator.faults import FaultRule
from graphhook.core.errors import ConfigError
from workers import runtime
from workers.response import mailops
from workers.response.purge import MAX_MAILBOXES, Purge, PurgeSpec, check_mailbox_count
from workers.response.search import MessageQuery

CAMPAIGN_ID = "<wire-transfer-2026@evil.example>"
CAMPAIGN = {"subject": "Urgent: wire transfer today", "from": {"name": "CEO", "address": "ceo@evil.example"},
            "body": "Please pay the attached invoice now.", "internetMessageId": CAMPAIGN_ID}
BIG = "user007@contoso.com"  # the mailbox holding 25 copies


def mailbox(i: int) -> str:
    return f"user{i:03d}@contoso.com"


@pytest.fixture
def ctx(settings, redis_client):
    mailops.forget_folders()
    context = runtime.build(settings, redis_client)
    yield context
    context.graph.session.close()
    mailops.forget_folders()


def seed(emulator, count: int, copies: dict[str, int] | None = None) -> list[str]:
    """``count`` mailboxes, each with one campaign copy and one ordinary message; ``copies`` overrides per mailbox."""
    boxes = [mailbox(i) for i in range(count)]
    for box in boxes:
        emulator.add_user(box)
        emulator.mail.add_message(box, {"subject": "Lunch?", "from": "colleague@contoso.com", "body": "12:30"})
        for _ in range((copies or {}).get(box, 1)):
            emulator.mail.add_message(box, CAMPAIGN)
    return boxes


def where(emulator, box: str) -> dict[str, list[str]]:
    """Folder name → subjects in one mailbox, as its owner (or an admin, for hidden folders) would see."""
    user = emulator.mail.user(box)
    return {f.display_name: sorted(m["subject"] for m in f.messages.values()) for f in user.folders.values() if f.messages}


def removals(emulator) -> list[dict]:
    return [r for r in emulator.request_log if r["method"] in ("DELETE", "POST")
            and re.search(r"/messages/[^/]+(/move|/permanentDelete)?$", r["path"])]


def spec(**changes) -> PurgeSpec:
    return PurgeSpec(MessageQuery(internet_message_id=CAMPAIGN_ID), **changes)


def test_200_mailboxes_purged_the_one_with_25_copies_in_3_rounds(ctx, emulator):
    boxes = seed(emulator, 200, {BIG: 25})
    result = Purge.create(ctx.graph, ctx.redis, spec(), boxes).run(concurrency=8)

    assert result.ok and result.totals["found"] == 224 and result.totals["removed"] == 224
    for box in boxes:  # soft purge: every copy in Deleted Items, nothing else touched
        copies = 25 if box == BIG else 1
        assert where(emulator, box) == {"Inbox": ["Lunch?"], "Deleted Items": [CAMPAIGN["subject"]] * copies}
    big = next(r for r in result.mailboxes if r.mailbox == BIG)
    assert (big.status, big.found, big.removed, big.failed, big.rounds) == ("removed", 25, 25, 0, 3)
    assert {r.rounds for r in result.mailboxes if r.mailbox != BIG} == {1}
    # Graph's 4 concurrent requests per app and mailbox were kept: the emulator never had to refuse one.
    assert emulator.throttle.rejected["ApplicationThrottled"] == 0

    # Microsoft's limit: never more than 10 removals between two searches of a mailbox.
    log = [r for r in emulator.request_log if f"/users/{BIG}/" in r["path"]]
    rounds, current = [], 0
    for entry in log:
        if entry["method"] == "GET" and entry["path"].endswith("/messages"):
            if current:
                rounds.append(current)
            current = 0
        elif entry["path"].endswith("/move") and entry["status"] == 201:
            current += 1
    assert rounds + ([current] if current else []) == [10, 10, 5]


def test_hard_purge_takes_copies_out_of_sight_including_deleted_items(ctx, emulator):
    boxes = seed(emulator, 3)
    emulator.mail.add_message(boxes[0], CAMPAIGN, folder="deleteditems")
    result = Purge.create(ctx.graph, ctx.redis, spec(mode="hard"), boxes).run()
    assert result.ok and result.totals["removed"] == 4
    for box in boxes:
        seen = where(emulator, box)
        assert seen["Inbox"] == ["Lunch?"] and "Deleted Items" not in seen
        assert seen["Deletions"] == [CAMPAIGN["subject"]] * (2 if box == boxes[0] else 1)


def test_soft_purge_leaves_copies_already_in_deleted_items_alone(ctx, emulator):
    [box] = seed(emulator, 1)
    emulator.mail.add_message(box, CAMPAIGN, folder="deleteditems")
    result = Purge.create(ctx.graph, ctx.redis, spec(), [box]).run()
    assert result.ok and [(r.found, r.removed) for r in result.mailboxes] == [(1, 1)]
    assert where(emulator, box)["Deleted Items"] == [CAMPAIGN["subject"]] * 2
    assert len(removals(emulator)) == 1


def test_dry_run_changes_nothing_and_reports_what_would_go(ctx, emulator):
    boxes = seed(emulator, 20, {mailbox(3): 12})
    emulator.mail.add_message(mailbox(4), CAMPAIGN, folder="deleteditems")  # already where a soft purge puts it
    before = {box: where(emulator, box) for box in boxes}
    result = Purge.create(ctx.graph, ctx.redis, spec(dry_run=True), boxes).run()
    assert result.ok and result.totals["found"] == 31 and result.totals["removed"] == 0
    assert {r.mailbox: (r.status, r.found, r.rounds) for r in result.mailboxes}[mailbox(3)] == ("would remove", 12, 2)
    assert {box: where(emulator, box) for box in boxes} == before
    assert removals(emulator) == []


def test_more_than_50000_mailboxes_refused_before_any_work(ctx, emulator, redis_client):
    boxes = [f"m{i}@contoso.com" for i in range(MAX_MAILBOXES + 1)]
    with pytest.raises(ConfigError, match="at most 50,000 mailboxes"):
        Purge.create(ctx.graph, ctx.redis, spec(), boxes)
    assert emulator.requests(path="/v1.0/") == [] and redis_client.keys("graphhook:purge*") == []
    check_mailbox_count(MAX_MAILBOXES)  # exactly the limit is allowed


def test_throttling_injected_mid_purge_recovers(ctx, emulator):
    boxes = seed(emulator, 40, {mailbox(5): 14})
    rule = FaultRule(category="graph", status=429, count=24, retry_after=0.05, path=r"^/v1\.0/users/")
    added = []

    def throttle_once_underway(snapshot: dict[str, int]) -> None:
        if snapshot.get("removed", 0) >= 10 and not added:
            added.append(emulator.faults.add(rule))

    result = Purge.create(ctx.graph, ctx.redis, spec(), boxes).run(concurrency=8, on_progress=throttle_once_underway)
    assert added and rule.fired == 24  # Graph really answered 429 two dozen times, mid-purge
    assert any(r["status"] == 429 for r in emulator.request_log)
    assert result.ok and result.totals["removed"] == 53
    assert all(CAMPAIGN["subject"] not in where(emulator, box).get("Inbox", []) for box in boxes)
    moved = [r["path"] for r in removals(emulator) if r["status"] == 201]
    assert len(moved) == len(set(moved)) == 53  # each copy moved exactly once


def test_mailbox_that_does_not_exist_is_reported_and_fails_the_purge(ctx, emulator):
    boxes = seed(emulator, 2)
    result = Purge.create(ctx.graph, ctx.redis, spec(), boxes + ["nobody@contoso.com"]).run()
    assert not result.ok
    reports = {r.mailbox: r for r in result.mailboxes}
    assert reports["nobody@contoso.com"].status == "failed"
    assert "ErrorInvalidUser" in reports["nobody@contoso.com"].why[0]
    assert [reports[b].status for b in boxes] == ["removed", "removed"]


def test_failed_removals_are_reported_then_retried_on_resume(ctx, emulator):
    boxes = seed(emulator, 3, {mailbox(1): 4})
    broken = emulator.faults.add(FaultRule(category="graph", status=500, count=2, method="POST",
                                           path=rf"/users/{mailbox(1)}/messages/[^/]+/move$"))
    purge = Purge.create(ctx.graph, ctx.redis, spec(), boxes)
    first = purge.run()
    report = {r.mailbox: r for r in first.mailboxes}[mailbox(1)]
    assert broken.fired == 2 and not first.ok and purge.status == "partial"
    assert (report.status, report.found, report.removed, report.failed) == ("partial", 4, 2, 2)
    assert report.why == ["500 InternalServerError: An internal server error occurred."]
    assert len(where(emulator, mailbox(1))["Inbox"]) == 3  # two copies still there, and the ordinary message

    second = Purge.load(ctx.graph, ctx.redis, purge.id).run()
    report = {r.mailbox: r for r in second.mailboxes}[mailbox(1)]
    assert second.ok and (report.status, report.found, report.removed, report.failed) == ("removed", 4, 4, 0)
    assert where(emulator, mailbox(1)) == {"Inbox": ["Lunch?"], "Deleted Items": [CAMPAIGN["subject"]] * 4}


def test_interrupted_in_process_purge_resumes_without_removing_twice(ctx, emulator, redis_client):
    boxes = seed(emulator, 12, {mailbox(0): 23})
    purge = Purge.create(ctx.graph, ctx.redis, spec(), boxes)

    def stop_after_some(snapshot: dict[str, int]) -> None:
        if snapshot.get("removed", 0) >= 10:
            purge.stop.set()

    first = purge.run(concurrency=2, on_progress=stop_after_some)
    assert first.interrupted and not first.ok and purge.status == "interrupted"
    assert 10 <= first.totals["removed"] < 34
    # A left-over "pending" removal (as if the process died between the call and its record) is settled by a 404.
    done = [k for k, v in redis_client.hgetall(f"graphhook:purge:{purge.id}:msgs:{mailbox(0)}").items() if v == b"removed"]
    redis_client.hset(f"graphhook:purge:{purge.id}:msgs:{mailbox(0)}", done[0], "pending")

    second = Purge.load(ctx.graph, ctx.redis, purge.id).run(concurrency=4)
    assert second.ok and second.totals["removed"] == 34 and purge.status == "done"
    assert where(emulator, mailbox(0)) == {"Inbox": ["Lunch?"], "Deleted Items": [CAMPAIGN["subject"]] * 23}
    moved = [r["path"] for r in removals(emulator) if r["status"] == 201]
    assert len(moved) == len(set(moved)) == 34
    # Ids are immutable: the pending removal is found in Deleted Items and not sent again.
    assert [r["status"] for r in removals(emulator) if done[0].decode() in r["path"]] == [201]


def test_purge_needs_a_selective_query():
    with pytest.raises(ConfigError, match="time window alone"):
        PurgeSpec(MessageQuery(since=None))


def test_a_lock_holder_that_exited_counts_as_dead_even_before_it_is_reaped():
    """A purge that crashed leaves its lock; a zombie pid (exited, unreaped) must not keep it."""
    import subprocess
    import sys
    import time

    from workers.response.purge import process_alive

    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while process_alive(exited.pid) and time.monotonic() < deadline:  # not waited on: a zombie
            time.sleep(0.02)
        assert process_alive(running.pid) and not process_alive(exited.pid)
    finally:
        running.kill()
        running.wait()
        exited.wait()
