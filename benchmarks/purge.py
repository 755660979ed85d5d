"""Search-and-purge: wall time and Graph requests per removed copy, concurrent mailboxes vs one at a time.

Baseline, measured in the same run: the same purge (same mailboxes, same copies)
with ``concurrency=1``. The emulator runs in this process, so on a small machine
it competes with the purge for the CPU: the ratio shows what concurrency buys
when Graph's latency, not our CPU, is the bottleneck only approximately.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import redis

from benchmarks import Report

CAMPAIGN = {"subject": "Urgent: wire transfer", "from": "ceo@evil.example", "internetMessageId": "<bench@evil.example>"}


def _seed(emulator, prefix: str, count: int) -> list[str]:
    boxes = [f"{prefix}{i:04d}@contoso.com" for i in range(count)]
    for i, box in enumerate(boxes):
        emulator.add_user(box)
        for _ in range(12 if i % 50 == 0 else 1):  # every 50th mailbox holds 12 copies (two rounds)
            emulator.mail.add_message(box, CAMPAIGN)
    return boxes


def _purge(ctx, emulator, boxes: list[str], concurrency: int) -> tuple[float, int, int]:
    from workers.response.purge import Purge, PurgeSpec
    from workers.response.search import MessageQuery

    before = len(emulator.request_log)
    started = time.perf_counter()
    spec = PurgeSpec(MessageQuery(internet_message_id=CAMPAIGN["internetMessageId"]))
    result = Purge.create(ctx.graph, ctx.redis, spec, boxes).run(concurrency=concurrency)
    wall = time.perf_counter() - started
    return wall, result.totals["removed"], len(emulator.request_log) - before


def run(quick: bool = False) -> Report:
    """Purge N mailboxes twice (new mailboxes each time): one at a time, then 8 at a time."""
    from emulator import Emulator
    from graphhook.core.settings import Settings
    from graphhook.redis_server import RedisServer
    from workers import runtime

    count = 60 if quick else int(os.environ.get("BENCH_PURGE_MAILBOXES", "300"))
    work = Path(tempfile.mkdtemp(prefix="graphhook-bench-purge-"))
    report = Report("purge")
    with RedisServer(work / "redis") as server, Emulator(work / "emulator") as emulator:
        os.environ["REQUESTS_CA_BUNDLE"] = str(emulator.ca_path)
        r = redis.Redis.from_url(server.url)
        settings = Settings.from_env({**emulator.environment(), "REDIS_URL": server.url})
        ctx = runtime.build(settings, r)
        ctx.tokens.token()
        base_wall, base_removed, base_requests = _purge(ctx, emulator, _seed(emulator, "a", count), 1)
        wall, removed, requests_ = _purge(ctx, emulator, _seed(emulator, "b", count), 8)
        throttled = sum(1 for e in emulator.request_log if e["status"] == 429)
    report.add("mailboxes per purge", f"{count}")
    report.add("copies removed (baseline / concurrent)", f"{base_removed} / {removed}")
    report.add("baseline, 1 mailbox at a time", f"{base_wall:.2f} s ({base_removed / base_wall:.0f} copies/s)")
    report.add("8 mailboxes at a time", f"{wall:.2f} s ({removed / wall:.0f} copies/s)")
    report.add("speed-up vs baseline", f"{base_wall / wall:.2f}x")
    per_copy, base_per_copy = requests_ / max(1, removed), base_requests / max(1, base_removed)
    report.add("Graph requests per removed copy", f"{per_copy:.2f} (baseline {base_per_copy:.2f})")
    report.add("429 answers from the emulator", f"{throttled}")
    report.notes.append("the emulator shares this process and its CPU; real Graph latency favours concurrency more")
    return report


if __name__ == "__main__":
    print(run().render())
