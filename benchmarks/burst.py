"""A phishing campaign as a burst: how soon each message's signed webhook goes out, with Graph's pace and throttling.

The whole system as deployed (graphhook/harness.py: Redis with its append-only file, the emulator
over HTTPS, the receiver under gunicorn, ONE ``graphhook worker`` process already running, a
webhook sink checking signatures). 500 new messages arrive over 10 s across 100 mailboxes. The
baseline burst runs with Graph answering at once; the measured one with 150 ms per Graph call and
10 % of message GETs answered 429 with ``Retry-After: 1``. Reported: delivery→webhook p50/p95/max
(target p95 ≤ 5 s), exactly once, requests refused for going over 4 per mailbox, requests sent to
a mailbox before its Retry-After had passed (both 0), and the worker's peak RSS (target ≤ 150 MB).
"""

from __future__ import annotations

import os
import sys
import time

from benchmarks import Report

MAILBOXES = 100
LATENCY = 0.150  # s per Graph call


def _peak_rss_mb(pid: int) -> float:
    """VmHWM of a process, in MB (0 when unreadable)."""
    try:
        for line in open(f"/proc/{pid}/status", encoding="ascii"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _burst(pipe, messages: int, seconds: float, tag: str) -> list[str]:
    """Deliver ``messages`` evenly over ``seconds``, round robin over the mailboxes; their ids."""
    ids = []
    started = time.monotonic()
    for i in range(messages):
        due = started + seconds * i / messages
        time.sleep(max(0.0, due - time.monotonic()))
        ids.append(pipe.deliver(pipe.mailboxes[i % len(pipe.mailboxes)], f"{tag} {i}"))
    return ids


def _drain(pipe, ids: list[str], timeout: float) -> None:
    pipe.wait_until(lambda: set(ids) <= set(pipe.sink.first_delivery()), timeout, "every webhook of the burst")


def _latencies(pipe, ids: list[str]) -> list[float]:
    first = pipe.sink.first_delivery()
    return sorted(first[m] - pipe.delivered_at[m] for m in ids if m in first)


def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def run(quick: bool = False) -> Report:
    """Delivery→webhook latency of a burst with Graph's latency and 429s, against the same burst without."""
    from emulator.faults import FaultRule
    from graphhook.harness import Pipeline

    messages = 100 if quick else int(os.environ.get("BENCH_BURST_MESSAGES", "500"))
    spread = 2.0 if quick else 10.0
    mailboxes = [f"campaign{i}@contoso.com" for i in range(20 if quick else MAILBOXES)]
    report = Report("campaign burst (one worker process; 150 ms Graph latency, 10 % of GETs throttled)")
    with Pipeline(mailboxes, workers=1) as pipe:
        (worker_pid,) = pipe.workers.pids()
        baseline = _burst(pipe, messages, spread, "baseline")
        _drain(pipe, baseline, 600)
        pipe.emulator.throttle.reset()
        logged = len(pipe.emulator.request_log)
        pipe.emulator.latency = LATENCY
        pipe.emulator.faults.add(FaultRule(category="graph", status=429, rate=0.10, retry_after=1, method="GET",
                                           path=r"/messages/[^/]+$"))
        measured = _burst(pipe, messages, spread, "burst")
        _drain(pipe, measured, 900)
        outcome = pipe.outcome()
        stats = pipe.emulator.throttle.stats()
        throttled = sum(1 for r in list(pipe.emulator.request_log)[logged:] if r["status"] == 429)
        rss = _peak_rss_mb(worker_pid)
    base, lat = _latencies(pipe, baseline), _latencies(pipe, measured)
    report.add("burst", f"{messages} messages over {spread:.0f} s to {len(mailboxes)} mailboxes")
    report.add("baseline (0 ms, no 429) p50 / p95 / max",
               f"{_pct(base, .5):.2f} / {_pct(base, .95):.2f} / {base[-1]:.2f} s")
    report.add("150 ms + 429s p50 / p95 / max", f"{_pct(lat, .5):.2f} / {_pct(lat, .95):.2f} / {lat[-1]:.2f} s "
                                                 f"(target p95 <= 5 s)")
    report.add("p95 vs baseline", f"{_pct(lat, .95) / max(_pct(base, .95), 1e-3):.1f}x")
    report.add("exactly once", "yes" if outcome.exactly_once else
               f"NO: missing {len(outcome.missing)}, fired twice {len(outcome.fired_twice)}")
    report.add("429s answered (10 % of GETs)", str(throttled))
    report.add("requests over 4 per mailbox", f"{stats['overConcurrency']} (peak in flight {stats['peakInFlight']})")
    report.add("requests before Retry-After passed", str(stats["early"]))
    report.add("worker peak RSS", f"{rss:.0f} MB (target <= 150 MB)")
    report.notes.append(f"{os.cpu_count()} CPU(s); emulator, sink and this script share one process; "
                        "the receiver runs under gunicorn")
    return report


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv).render())
