"""Latency hiding: one worker process's throughput with Graph's latency, against the same process without it.

Real Graph answers a call in roughly 100–300 ms; the emulator in about 1 ms. This benchmark runs
the Procfile's ``worker`` command as ONE process on 300 queued messages over 50 mailboxes, once
with every Graph call delayed by 150 ms (the emulator's ``latency``) and once without, in the same
run, and reports the ratio (target ≥ 0.80: the process hides Graph's latency by keeping many jobs
in flight). For reference it also times the old model, one job at a time (``graphhook worker
--simple``), at 150 ms.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from benchmarks import Report
from benchmarks.worker_scaling import _procfile_worker, _round, system

MAILBOXES = 50
LATENCY = 0.150  # s per Graph call


def run(quick: bool = False) -> Report:
    """Messages per second of one worker process at 150 ms and 0 ms Graph latency; their ratio."""
    messages = 60 if quick else int(os.environ.get("BENCH_LATENCY_MESSAGES", "300"))
    reference = max(20, messages // 3)  # one job at a time is slow: fewer messages
    work = Path(tempfile.mkdtemp(prefix="graphhook-bench-latency-"))
    report = Report("latency hiding (one worker process, 150 ms per Graph call)")
    with system(work, MAILBOXES) as (emulator, r, env):
        emulator.latency = 0.0
        fast = messages / _round(emulator, r, env, 1, messages, "l0", work, mailboxes=MAILBOXES)
        emulator.latency = LATENCY
        slow = messages / _round(emulator, r, env, 1, messages, "l150", work, mailboxes=MAILBOXES)
        simple_cmd = [*_procfile_worker(), "--simple"]
        simple = reference / _round(emulator, r, env, 1, reference, "simple", work, mailboxes=MAILBOXES,
                                    command=simple_cmd)
        peak = emulator.throttle.stats()
    report.add("messages", f"{messages} over {MAILBOXES} mailboxes, one notification per POST and per job")
    report.add("worker command", " ".join(_procfile_worker()))
    report.add("0 ms latency (baseline)", f"{fast:7.1f} msg/s")
    report.add("150 ms latency", f"{slow:7.1f} msg/s")
    report.add("ratio 150 ms vs 0 ms", f"{slow / fast:.2f} (target >= 0.80)")
    report.add("one job at a time (--simple), 150 ms", f"{simple:7.1f} msg/s ({simple / fast:.2f} of the baseline)")
    report.add("requests refused for concurrency", str(peak["overConcurrency"]))
    report.notes.append(f"{os.cpu_count()} CPU(s); emulator and receiver run in the benchmark's own process")
    return report


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv).render())
