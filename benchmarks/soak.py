"""Soak: thousands of messages through the whole system while it is being broken, counted at a webhook sink.

``make soak`` (``python -m benchmarks.soak``) runs the full version: 10,000 messages across 50
mailboxes. ``tests/soak/test_soak.py`` runs a short one (300 messages, 5 mailboxes) with the same
faults inside ``make test``. Throughout the run:

- 10 % of Graph calls fail: 429 and 503 (with Retry-After), 504 gateway timeouts, dropped
  connections, and slow answers;
- the emulator delivers notifications twice (10 %) and out of order;
- one worker process is killed with SIGKILL in the middle of a job;
- Redis is killed (SIGKILL) and restarted from its append-only file (``appendfsync always``);
- one subscription is removed by the emulator (``subscriptionRemoved``): the lifecycle job
  recreates it and a delta resync finds the mail that arrived meanwhile.

Every message must fire its trigger exactly once: one signed event per message at the sink,
none missing, none twice. As a benchmark it reports throughput and end-to-end latency
(emulator delivery → webhook received) p50/p99, against a baseline measured in the same run:
the same pipeline with no faults, on fewer messages.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmarks import Report, machine

FAULT_RATES = {"429": 0.03, "503": 0.03, "504": 0.02, "reset": 0.01, "slow": 0.01}  # 10 % of Graph calls


@dataclass
class SoakResult:
    """What one soak run measured."""

    messages: int
    mailboxes: int
    workers: int
    faults: bool
    ok: bool
    fired: int
    missing: list[str]
    fired_twice: list[str]
    redelivered: int
    unexpected: list[str]
    bad_signatures: int
    recorded_twice: list[str]
    seconds: float  # first delivery → last message's trigger
    throughput: float  # messages per second until 99 % had fired (the last ones wait for RQ to retry a killed job)
    p50: float  # s, emulator delivery → webhook received
    p99: float
    graph_faults: int = 0
    worker_restarts: int = 0
    receiver_503: int = 0
    timeline: list[tuple[float, str]] = field(default_factory=list)
    workdir: str = ""

    def summary(self) -> str:
        verdict = "exactly once" if self.ok else "NOT exactly once"
        return (f"{self.messages} messages / {self.mailboxes} mailboxes / {self.workers} workers: {verdict} "
                f"(fired {self.fired}, missing {len(self.missing)}, twice {len(self.fired_twice)}, "
                f"recorded twice {len(self.recorded_twice)}, "
                f"same event redelivered {self.redelivered}); {self.throughput:.1f} msg/s, "
                f"p50 {self.p50:.2f} s, p99 {self.p99:.2f} s; Graph faults injected {self.graph_faults}, "
                f"receiver 503s {self.receiver_503}, worker restarts {self.worker_restarts}")


def _add_faults(emulator) -> None:
    from emulator.faults import FaultRule

    rules = [FaultRule(category="graph", status=429, rate=FAULT_RATES["429"], retry_after=0.5),
             FaultRule(category="graph", status=503, rate=FAULT_RATES["503"], retry_after=0.5),
             FaultRule(category="graph", status=504, rate=FAULT_RATES["504"], retry_after=None),
             FaultRule(category="graph", status=0, rate=FAULT_RATES["reset"]),
             FaultRule(category="graph", status=None, delay=1.5, rate=FAULT_RATES["slow"])]
    for rule in rules:
        emulator.faults.add(rule)


def run_soak(*, messages: int, mailboxes: int, workers: int = 3, faults: bool = True, rate: float = 60.0,
             timeout: float = 900.0, fast_forward: bool = False, workdir: Path | None = None,
             log_level: str = "WARNING", env: dict[str, str] | None = None, say: Callable[[str], None] = lambda text: None) -> SoakResult:
    """Deliver ``messages`` across ``mailboxes`` at ``rate`` per second, with the faults when ``faults``.

    ``fast_forward``: expire the jobs of dead workers instead of waiting out RQ's heartbeat
    (job timeout + 60 s); see :meth:`graphhook.harness.Pipeline.expire_dead_workers_jobs`.
    """
    from graphhook.harness import Pipeline

    boxes = [f"soak{i:02d}@contoso.com" for i in range(mailboxes)]
    with Pipeline(boxes, workers=workers, workdir=workdir, log_level=log_level, env=env) as pipe:
        emulator = pipe.emulator
        say(f"pipeline up in {pipe.timeline[-1][0]:.1f} s (work dir {pipe.workdir})")
        if faults:
            _add_faults(emulator)
            emulator.delivery.options.duplicate_rate = 0.10
            emulator.delivery.options.reorder = True
        chaos_done = threading.Event()
        progress = {"sent": 0}
        chaos_error: list[BaseException] = []

        def chaos() -> None:  # each fault once, at a fixed point of the delivery
            try:
                for share, act in ((0.25, pipe.kill_busy_worker), (0.5, pipe.crash_redis),
                                   (0.7, lambda: pipe.remove_subscription(boxes[0]))):
                    while progress["sent"] < share * messages:
                        time.sleep(0.05)
                    act()
                    say(pipe.timeline[-1][1])
            except BaseException as exc:  # noqa: BLE001 — reported by the main thread
                chaos_error.append(exc)
            finally:
                chaos_done.set()

        if faults:
            threading.Thread(target=chaos, name="soak-chaos", daemon=True).start()
        else:
            chaos_done.set()
        started = time.monotonic()
        first_at = time.time()
        for i in range(messages):  # paced like real arrival, bounded by the count
            due = started + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            pipe.deliver(boxes[i % mailboxes], f"soak message {i}")
            progress["sent"] = i + 1
            if (i + 1) % max(1, messages // 10) == 0:
                say(f"delivered {i + 1}/{messages}; fired {len(pipe.sink.first_delivery())}")
        chaos_done.wait(timeout=120)
        if chaos_error:
            raise chaos_error[0]
        pipe.note("all messages delivered")
        deadline = time.monotonic() + timeout
        last_report = 0.0
        while time.monotonic() < deadline:
            outcome = pipe.outcome()
            if outcome.fired >= outcome.delivered:
                break
            if fast_forward:
                pipe.expire_dead_workers_jobs()
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                say(f"waiting: fired {outcome.fired}/{outcome.delivered}; {_queue_state(pipe)}")
            time.sleep(0.5)
        last_fired = max(pipe.sink.first_delivery().values(), default=first_at)
        pipe.note("every message fired" if pipe.outcome().fired >= messages else "timed out")
        # Let late duplicates show up: wait until nothing is queued, started or scheduled (bounded).
        settle_deadline = time.monotonic() + (60 if not fast_forward else 20)
        time.sleep(2)
        while time.monotonic() < settle_deadline and _busy(pipe):
            if fast_forward:
                pipe.expire_dead_workers_jobs()
            time.sleep(0.5)
        time.sleep(1)
        outcome = pipe.outcome()
        seconds = max(1e-9, last_fired - first_at)
        fired_at = sorted(pipe.sink.first_delivery().values())
        n99 = max(1, int(len(fired_at) * 0.99))
        throughput = n99 / max(1e-9, fired_at[n99 - 1] - first_at) if fired_at else 0.0
        return SoakResult(
            messages=messages, mailboxes=mailboxes, workers=workers, faults=faults, ok=outcome.exactly_once,
            fired=outcome.fired, missing=outcome.missing, fired_twice=outcome.fired_twice,
            redelivered=len(outcome.redelivered), unexpected=outcome.unexpected,
            bad_signatures=outcome.bad_signatures, recorded_twice=outcome.recorded_twice, seconds=seconds, throughput=throughput,
            p50=outcome.percentile(0.50), p99=outcome.percentile(0.99), graph_faults=emulator.faults.injected,
            worker_restarts=pipe.workers.restarts,
            receiver_503=sum(1 for e in emulator.events if e["event"] == "delivery.attempt" and e.get("status") == 503),
            timeline=pipe.timeline, workdir=str(pipe.workdir))


def _queue_state(pipe) -> str:
    from graphhook.core import jobformat

    try:
        qs = [jobformat.queue(name, pipe.redis) for name in pipe.queue_names]
        return (f"queued {sum(q.count for q in qs)}, started {sum(q.started_job_registry.count for q in qs)}, "
                f"scheduled {sum(q.scheduled_job_registry.count for q in qs)}, failed "
                f"{sum(q.failed_job_registry.count for q in qs)}, emulator pending {pipe.emulator.delivery.pending()}")
    except Exception as exc:  # noqa: BLE001
        return f"({type(exc).__name__})"


def _busy(pipe) -> bool:
    """Whether any job of the pipeline's queue is still queued, running, scheduled or waiting to retry."""
    from graphhook.core import jobformat

    try:
        queues = [jobformat.queue(name, pipe.redis) for name in pipe.queue_names]
        return any(q.count or q.started_job_registry.count or q.scheduled_job_registry.count for q in queues)
    except Exception:  # noqa: BLE001 — Redis restarting: assume busy
        return True


def run(quick: bool = False) -> Report:
    """Benchmark: the soak with faults against a fault-free baseline of the same pipeline."""
    # make bench: 2,000 messages (make soak runs the 10,000); the baseline has no faults, same pipeline.
    messages, mailboxes = (300, 5) if quick else (2_000, 50)
    baseline = run_soak(messages=min(messages, 1000), mailboxes=mailboxes, faults=False)
    soak = run_soak(messages=messages, mailboxes=mailboxes, faults=True)
    report = Report("soak")
    report.add("messages / mailboxes / workers", f"{soak.messages} / {soak.mailboxes} / {soak.workers}")
    report.add("exactly once at the sink", "yes" if soak.ok else
               f"NO: missing {len(soak.missing)}, twice {len(soak.fired_twice)}")
    report.add("same event POSTed again (same event id)", str(soak.redelivered))
    report.add("throughput to 99 % fired, faults (msg/s)", f"{soak.throughput:.1f}")
    report.add("throughput to 99 % fired, baseline no faults (msg/s)", f"{baseline.throughput:.1f}")
    report.add("last message fired after (s), faults / baseline", f"{soak.seconds:.0f} / {baseline.seconds:.0f}")
    report.add("throughput ratio (faults / baseline)", f"{soak.throughput / baseline.throughput:.2f}")
    report.add("latency p50 / p99, faults (s)", f"{soak.p50:.2f} / {soak.p99:.2f}")
    report.add("latency p50 / p99, baseline (s)", f"{baseline.p50:.2f} / {baseline.p99:.2f}")
    report.add("Graph faults injected", str(soak.graph_faults))
    report.add("receiver 503s (Redis down)", str(soak.receiver_503))
    report.add("worker restarts (killed or lost Redis)", str(soak.worker_restarts))
    report.notes.append("offered load 60 msg/s (above what 3 workers sustain under faults, so a backlog builds); "
                        "latency = emulator delivery → signed webhook at the sink")
    report.notes.append("a killed worker's job returns after RQ's heartbeat lapses (job timeout 180 s + 60 s), "
                        "which sets when the last message fires")
    report.notes.append(f"machine: {machine()}")
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.soak [--messages N] [--mailboxes M]`` (``make soak``): exit 0 iff exactly once."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--mailboxes", type=int, default=50)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rate", type=float, default=60.0, help="messages delivered per second")
    parser.add_argument("--no-faults", action="store_true")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}", flush=True)
    result = run_soak(messages=args.messages, mailboxes=args.mailboxes, workers=args.workers, rate=args.rate,
                      faults=not args.no_faults, say=lambda text: print(f"  {text}", flush=True))
    for at, what in result.timeline:
        print(f"  t={at:7.2f} s  {what}")
    print(("OK: " if result.ok else "FAILED: ") + result.summary(), flush=True)
    print(f"  last message fired {result.seconds:.0f} s after the first delivery", flush=True)
    if not result.ok:
        print(f"  missing: {result.missing[:10]}\n  twice: {result.fired_twice[:10]}\n  work dir: {result.workdir}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
