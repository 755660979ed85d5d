"""Graph's pace in the emulator: a latency per call ($batch: once), Retry-After kept, the limits counted."""

from __future__ import annotations

import subprocess
import sys
import time

from emulator.faults import FaultRule
from tests.conftest import ROOT

ALICE = "alice@contoso.com"


def test_every_graph_call_takes_the_latency_and_a_batch_takes_it_once(emulator, graph):
    emulator.add_user(ALICE)
    emulator.latency = 0.3
    started = time.monotonic()
    assert graph.get(f"/users/{ALICE}/messages").status_code == 200
    assert time.monotonic() - started >= 0.3  # never faster than Graph's pace (a lower bound: not a timing race)
    assert emulator.paced == 1
    parts = [{"id": str(i), "method": "GET", "url": f"/users/{ALICE}/mailFolders/inbox"} for i in range(8)]
    reply = graph.post("/$batch", json={"requests": parts})
    assert reply.status_code == 200 and {p["status"] for p in reply.json()["responses"]} == {200}
    batch = [r for r in emulator.request_log if r["path"].endswith("/$batch")][-1]
    assert len([r for r in emulator.request_log if r["batch"]]) == 8 and batch["ms"] >= 300
    assert emulator.paced == 2  # the batch took Graph's time once; its eight parts added none


def test_a_request_before_retry_after_has_passed_is_refused_and_counted(emulator, graph):
    emulator.add_user(ALICE)
    emulator.add_user("bob@contoso.com")
    emulator.faults.add(FaultRule(category="graph", status=429, count=1, retry_after=30, path="/messages$"))
    first = graph.get(f"/users/{ALICE}/messages")
    assert first.status_code == 429 and first.headers["Retry-After"] == "30"
    early = graph.get(f"/users/{ALICE}/mailFolders")
    assert early.status_code == 429 and 0 < float(early.headers["Retry-After"]) <= 30
    assert graph.get("/users/bob@contoso.com/mailFolders").status_code == 200  # another mailbox is not held up
    assert emulator.throttle.stats()["early"] == 1
    emulator.advance(31)  # the emulator's clock: the wait is over
    assert graph.get(f"/users/{ALICE}/mailFolders").status_code == 200
    assert emulator.throttle.stats()["early"] == 1


def test_the_admin_api_sets_latency_and_reports_the_limits(emulator, graph):
    import requests

    admin = f"{emulator.url}/_emulator"
    assert requests.post(f"{admin}/latency", json={"ms": 150}, verify=str(emulator.ca_path)).json() == {"ms": 150}
    assert emulator.latency == 0.15
    assert requests.post(f"{admin}/latency", json={"ms": -1}, verify=str(emulator.ca_path)).status_code == 400
    stats = requests.get(f"{admin}/throttle", verify=str(emulator.ca_path)).json()
    assert stats == {"rejected": {}, "early": 0, "overConcurrency": 0, "peakInFlight": 0}


def test_the_command_line_takes_a_latency_and_refuses_a_bad_one():
    done = subprocess.run([sys.executable, "-m", "graphhook", "emulator", "--latency-ms", "-5"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--latency-ms must be between 0 and 60000" in done.stderr
