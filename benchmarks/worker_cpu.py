"""Worker CPU per message and Graph requests per message (issue 5).

Each message has two small file attachments. The measured path is the real job,
``workers.jobs.process_notifications``: exactly-once marker, fetch through the
limiter and the pooled session, record building (verdicts, URLs, hashes) and
dispatch (the built-in record trigger). CPU is this thread's own
(``time.thread_time``); the in-process emulator answers from other threads.

Baseline, same run: a bare ``requests`` GET of the same message with
``$expand=attachments`` and ``.json()`` plus base64-decoding and hashing the
attachments — the least any fetch can do.

Also measured: the per-job cost of RQ's forking ``Worker`` against
``SimpleWorker`` (no-op jobs), which is why ``graphhook worker`` does not fork per job.

Targets: ≤ 5 ms CPU per message; ≤ 1.1 Graph requests per new message.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import time
from pathlib import Path

from benchmarks import Report

SPEC = {
    "subject": "Invoice 1042 for review",
    "from": {"name": "Supplier", "address": "billing@fabrikam.com"},
    "html": '<html><body><p>Please find the invoice attached. <a href="https://fabrikam.com/pay">pay here</a></p></body></html>',
    "headers": {"Authentication-Results": "spf=pass smtp.mailfrom=fabrikam.com; dkim=pass header.d=fabrikam.com; dmarc=pass"},
    "attachments": [
        {"kind": "file", "name": "invoice.pdf", "contentType": "application/pdf", "content": os.urandom(20_000)},
        {"kind": "file", "name": "lines.csv", "contentType": "text/csv", "content": b"item,qty\n" * 200},
    ],
}


def noop() -> None:
    """A job that does nothing (for the fork-per-job measurement)."""


def _per_job_overhead(r, worker_class, n: int) -> float:
    """Seconds per job cycle, from the first job's start to the last job's end (worker start-up excluded)."""
    from graphhook.core import jobformat

    queue = jobformat.queue(f"bench-{worker_class.__name__}", r)  # JSON jobs, as graphhook's workers run them
    enqueued = [queue.enqueue(noop) for _ in range(n)]
    worker_class([queue], connection=r, **jobformat.WORKER_OPTIONS).work(burst=True, logging_level="WARNING")
    for job in enqueued:
        job.refresh()
    first, last = enqueued[0].started_at, enqueued[-1].ended_at
    return (last - first).total_seconds() / n


def run(quick: bool = False) -> Report:
    """Run the benchmark and return its report."""
    import redis
    import requests
    from rq import SimpleWorker, Worker

    from emulator import Emulator
    from graphhook.core import keys
    from graphhook.core.settings import Settings
    from graphhook.redis_server import RedisServer
    from workers import jobs, runtime

    n = 100 if quick else 500
    work = Path(tempfile.mkdtemp(prefix="graphhook-bench-worker-"))
    report = Report("worker CPU per message (fetch with two attachments + dispatch)")
    with RedisServer(work / "redis") as server, Emulator(work / "emulator") as emulator:
        os.environ["REQUESTS_CA_BUNDLE"] = str(emulator.ca_path)
        r = redis.Redis.from_url(server.url)
        settings = Settings.from_env({**emulator.environment(), "REDIS_URL": server.url})  # no rules: record trigger only
        user = emulator.add_user("bench@contoso.com")
        ids = [emulator.deliver("bench@contoso.com", SPEC)["id"] for _ in range(3 * n)]
        ctx = runtime.build(settings, r)
        runtime.install(ctx)
        token = ctx.tokens.token()

        def item(mid: str) -> dict:
            return {"subscriptionId": "bench", "tenantId": settings.tenant_id, "changeType": "created",
                    "resource": f"Users/{user.id}/Messages/{mid}", "resourceData": {"id": mid}}

        # Baseline: bare GET + json + decode + hash.
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}"}
        c0 = time.thread_time()
        for mid in ids[:n]:
            body = session.get(f"{emulator.graph_url}/users/{user.id}/messages/{mid}",
                               params={"$expand": "attachments"}, headers=headers).json()
            for a in body["attachments"]:
                hashlib.sha256(base64.b64decode(a["contentBytes"])).hexdigest()
        base = (time.thread_time() - c0) / n

        jobs.process_notifications([item(ids[n])])  # warm-up (imports, config, connections)
        emulator.request_log.clear()
        c0, w0 = time.thread_time(), time.perf_counter()
        for mid in ids[n + 1:2 * n]:
            jobs.process_notifications([item(mid)])
        done = n - 1
        cpu, wall = (time.thread_time() - c0) / done, (time.perf_counter() - w0) / done
        graph = [e for e in emulator.request_log if e["path"].startswith("/v1.0/")]
        fired = r.llen(keys.EVENTS)

        # A burst: notifications arrive together, the receiver enqueues them as one job (20 here).
        emulator.request_log.clear()
        c0 = time.thread_time()
        burst = ids[2 * n:]
        for start in range(0, len(burst), 20):
            jobs.process_notifications([item(mid) for mid in burst[start:start + 20]])
        burst_cpu = (time.thread_time() - c0) / len(burst)
        trips = [e for e in emulator.request_log if e["path"].startswith("/v1.0/") and not e.get("batch")]
        parts = [e for e in emulator.request_log if e["path"].startswith("/v1.0/") and e.get("batch")]

        fork = _per_job_overhead(r, Worker, 20 if quick else 100)
        simple = _per_job_overhead(r, SimpleWorker, 20 if quick else 100)

    report.add("messages", f"{done} ({fired} triggers fired)")
    report.add("worker CPU per message", f"{cpu * 1000:.2f} ms (target ≤ 5 ms: {'met' if cpu <= 0.005 else 'NOT met'})")
    report.add("baseline bare GET+decode+hash", f"{base * 1000:.2f} ms")
    report.add("ratio worker / baseline", f"{cpu / base:.2f}×" if base else "n/a")
    report.add("wall time per message", f"{wall * 1000:.2f} ms")
    per = len(graph) / done
    report.add("Graph requests per message", f"{per:.2f} (target ≤ 1.1: {'met' if per <= 1.1 else 'NOT met'})")
    report.add("burst, 20 per job: CPU per message", f"{burst_cpu * 1000:.2f} ms")
    report.add("burst: HTTP round trips per message", f"{len(trips) / len(burst):.2f} "
               f"(Graph requests, counting $batch parts: {len(parts) / len(burst):.2f})")
    report.add("RQ Worker (fork) per no-op job", f"{fork * 1000:.2f} ms")
    report.add("RQ SimpleWorker per no-op job", f"{simple * 1000:.2f} ms (fork costs {fork / simple:.1f}×)")
    return report


if __name__ == "__main__":
    print(run().render())
