"""Redis down: the receiver answers 503 to every notification, Graph (the emulator) retries, and once
Redis is back every message fires its trigger exactly once. Nothing is lost.

The whole pipeline of :mod:`graphhook.harness`: gunicorn receiver over HTTPS, real workers, Redis
with its append-only file, killed with SIGKILL and restarted on the same port.
"""

from __future__ import annotations

import time

import pytest
import requests

from graphhook.harness import Pipeline

pytestmark = pytest.mark.timeout(180)

MAILBOXES = ["outage0@contoso.com", "outage1@contoso.com"]


def _attempts(emulator, start: float, end: float) -> list:
    return [e for e in emulator.events if e["event"] == "delivery.attempt" and start <= e["at"] <= end]


def test_while_redis_is_down_graph_gets_503_and_its_retries_deliver_everything_once(tmp_path):
    with Pipeline(MAILBOXES, workers=2, workdir=tmp_path / "outage") as pipe:
        emulator = pipe.emulator
        before = [pipe.deliver(MAILBOXES[i % 2], f"before outage {i}") for i in range(10)]
        Pipeline.wait_until(lambda: pipe.outcome().fired == len(before), 60, "the first messages")

        pipe.kill_redis()
        down_from = emulator.clock.time()
        during = [pipe.deliver(MAILBOXES[i % 2], f"during outage {i}") for i in range(20)]
        # Graph retries with back-off; wait until it has been refused a few times.
        Pipeline.wait_until(lambda: len(_attempts(emulator, down_from, emulator.clock.time())) >= 3, 30,
                       "Graph's delivery attempts")
        ready = requests.get(f"{pipe.receiver_url}/readyz", verify=str(emulator.ca_path), timeout=5)
        time.sleep(3)  # an outage of some seconds, with Graph's retries landing in it
        down_until = emulator.clock.time()
        pipe.start_redis()

        refused = _attempts(emulator, down_from, down_until)
        assert refused and {a["status"] for a in refused} == {503}, refused  # 503 throughout, never 202 or 500
        assert ready.status_code == 503
        assert pipe.outcome().fired == len(before)  # nothing of the outage fired while Redis was down

        after = [pipe.deliver(MAILBOXES[i % 2], f"after outage {i}") for i in range(10)]
        ids = before + during + after
        Pipeline.wait_until(lambda: pipe.outcome().fired == len(ids), 90, "every message's trigger")
        time.sleep(2)  # room for a duplicate to show up
        outcome = pipe.outcome()
        assert outcome.missing == [] and outcome.fired_twice == [] and outcome.unexpected == []
        assert outcome.fired == len(ids) == 40
