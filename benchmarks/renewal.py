"""Renewal sweep: CPU per renewal and sweep time for many subscriptions, within Graph's write limit.

Baseline, measured in the same run: the same number of bare ``requests`` PATCH calls
(no registry, no limiter, no error mapping) against the same emulator. The renewer's
own thread CPU (``time.thread_time``) is what counts; the emulator serves from other
threads. The write limiter's waits advance the emulator's clock instead of sleeping,
so the sweep's Graph-time (including those waits) is reported separately from wall time.

Target (issue 7): at most 2 ms CPU per renewal; no 429 from the emulator.

Many tenants (issue 21): 100 tenants × 100 mailboxes, the emulator serving the 100 tenants with one
multi-tenant app consented in each, one pass of the per-tenant renewer (workers/subscriptions/tenants.py),
against its baseline in the same run: the same 10,000 renewals in one tenant, which Graph's per-app-per-
tenant write limit serializes. Reported: Graph time of each (wall time plus the write-limit waits, which
advance the emulator's clock), their ratio, failures and 429s. ``python -m benchmarks.renewal --tenants``
runs this mode alone; ``--quick`` makes it 10 tenants × 200.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import redis

if TYPE_CHECKING:
    from benchmarks import Report
import requests

N = int(os.environ.get("BENCH_RENEWALS", "10000"))
LIFE = dt.timedelta(days=7) - dt.timedelta(minutes=10)  # what a fresh subscription has left


def _setup(emulator, r, public_url: str, count: int):
    from emulator.subscriptions import Subscription as EmuSubscription
    from graphhook.core import keys
    from workers.subscriptions import registry

    user = emulator.add_user("bench@contoso.com")
    now = emulator.clock.now()
    desired = []
    for i in range(count):
        sid = f"00000000-0000-0000-0000-{i:012d}"
        folder = f"folder{i}"
        emulator.subscriptions.items[sid] = EmuSubscription(
            id=sid, resource=f"users/{user.id}/mailFolders('{folder}')/messages", change_types=("created",),
            notification_url=f"{public_url}/notifications", lifecycle_url=f"{public_url}/lifecycle",
            expiration=now + LIFE, client_state="c" * 40, application_id=emulator.client_id,
            user_id=user.id, folder_ref=None)
        registry.save(r, registry.Record(
            id=sid, mailbox="bench@contoso.com", user_id=user.id, folder=folder, resource="r",
            expiration=registry.format_time(now + LIFE), client_state="c" * 40))
        r.hset(keys.delta(user.id, folder), "lastSync", registry.format_time(now))
        desired.append(("bench@contoso.com", folder))
    return desired


@contextlib.contextmanager
def _world(prefix: str) -> Iterator[tuple]:
    """A Redis and an emulator in a scratch directory; (emulator, redis client, PUBLIC_URL, settings)."""
    from emulator import Emulator
    from graphhook.core.settings import Settings
    from graphhook.redis_server import RedisServer

    work = Path(tempfile.mkdtemp(prefix=prefix))
    with RedisServer(work / "redis") as server, Emulator(work / "emulator") as emulator:
        os.environ["REQUESTS_CA_BUNDLE"] = str(emulator.ca_path)
        public_url = "https://127.0.0.1:1"
        yield (emulator, redis.Redis.from_url(server.url), public_url,
               Settings.from_env({**emulator.environment(), "REDIS_URL": server.url, "PUBLIC_URL": public_url}))


def measure(count: int = N) -> dict:
    """Run the sweep and its baseline; return the raw figures."""
    from workers import runtime
    from workers.subscriptions.renewer import Renewer

    with _world("graphhook-bench-renewal-") as (emulator, r, public_url, settings):
        desired = _setup(emulator, r, public_url, count)
        ctx = runtime.build(settings, r)
        token = ctx.tokens.token()

        # Baseline: bare PATCH calls, same count, same emulator.
        session = requests.Session()
        expiry = (emulator.clock.now() + LIFE).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
        emulator.subscriptions._writes.clear()
        t0, c0 = time.perf_counter(), time.thread_time()
        for i in range(count):
            if i and i % 900 == 0:
                emulator.advance(20.0)  # keep the baseline under the write limit too
            session.patch(f"{emulator.graph_url}/subscriptions/00000000-0000-0000-0000-{i:012d}",
                          json={"expirationDateTime": expiry}, headers={"Authorization": f"Bearer {token}"})
        base_cpu, base_wall = time.thread_time() - c0, time.perf_counter() - t0

        # The renewer's sweep (all subscriptions within the margin again after the jump).
        emulator.advance(6 * 24 * 3600 + 3600)  # ~23 h left: every one is inside the 24 h margin
        r.delete("graphhook:msal-cache")
        ctx = runtime.build(settings, r)
        emulator.request_log.clear()
        start_virtual = emulator.clock.time()
        renewer = Renewer(ctx, desired, clock=emulator.clock.now, sleep=emulator.advance)
        t0, c0 = time.perf_counter(), time.thread_time()
        report = renewer.reconcile()
        cpu, wall = time.thread_time() - c0, time.perf_counter() - t0
        graph_time = emulator.clock.time() - start_virtual
        throttled = sum(1 for e in emulator.request_log if e["status"] == 429)
    return {
        "renewals": report.renewed, "failed": report.failed, "throttled_429": throttled,
        "cpu_ms_per_renewal": 1000 * cpu / max(1, report.renewed),
        "baseline_cpu_ms_per_patch": 1000 * base_cpu / count,
        "cpu_ratio_vs_bare_patch": cpu / base_cpu if base_cpu else float("nan"),
        "sweep_wall_s": wall, "sweep_graph_time_s": graph_time, "baseline_wall_s": base_wall,
    }


# --- many tenants ----------------------------------------------------------------------------------

TENANTS, PER_TENANT = 100, 100  # 10,000 subscriptions, as 100 customers of 100 mailboxes


def _seed_tenant(emulator, r, public_url: str, name: str, tenant, count: int):
    """``count`` mailboxes of ``tenant`` with a live subscription each, at the emulator and in the registry;
    returns the configured tenant and the mailboxes' user ids."""
    from emulator.subscriptions import Subscription as EmuSubscription
    from workers.subscriptions import registry
    from workers.triggers.model import MailboxWatch, Tenant

    now = emulator.clock.now()
    watches, user_ids = [], []
    pipe = r.pipeline(transaction=False)
    for i in range(count):
        address = f"user{i}@{name}.example"
        user = tenant.add_user(address)
        sid = f"{tenant.tenant_id[:8]}-0000-0000-0000-{i:012d}"
        sub = EmuSubscription(
            id=sid, resource=f"users/{user.id}/mailFolders('inbox')/messages", change_types=("created",),
            notification_url=f"{public_url}/notifications", lifecycle_url=f"{public_url}/lifecycle",
            expiration=now + LIFE, client_state="c" * 40, application_id=emulator.client_id,
            user_id=user.id, folder_ref=None, tenant_id=tenant.tenant_id)
        with emulator.subscriptions.lock:  # the emulator's clock walks them from its own thread
            emulator.subscriptions.items[sid] = sub
        record = registry.Record(
            id=sid, mailbox=address, user_id=user.id, folder="inbox", resource="r",
            expiration=registry.format_time(now + LIFE), client_state="c" * 40, tenant_id=tenant.tenant_id,
            tenant=name, app_id=emulator.client_id)
        pipe.hset(f"graphhook:sub:{sid}", mapping=record.to_redis())
        pipe.sadd("graphhook:subs", sid)
        watches.append(MailboxWatch(address, ("inbox",)))
        user_ids.append(user.id)
    pipe.execute()
    return Tenant(name, tenant.tenant_id, None, tuple(watches)), user_ids


def _sweep(emulator, r, settings, tenants) -> dict:
    """One pass of the multi-tenant renewer over ``tenants``, every subscription inside the renewal margin."""
    from graphhook.core import keys
    from workers import runtime
    from workers.subscriptions import registry
    from workers.subscriptions.tenants import Renewers

    now = registry.format_time(emulator.clock.now())
    pipe = r.pipeline(transaction=False)
    for _, user_ids in tenants:  # synced just now: the pass renews, it does not enqueue safety resyncs
        for user_id in user_ids:
            pipe.hset(keys.delta(user_id, "inbox"), "lastSync", now)
    pipe.execute()
    configured = tuple(tenant for tenant, _ in tenants)
    renewers = Renewers(runtime.build(settings, r), lambda: configured, clock=emulator.clock.now, sleep=emulator.advance)
    emulator.request_log.clear()
    start_virtual, t0 = emulator.clock.time(), time.perf_counter()
    report = renewers.reconcile()
    wall = time.perf_counter() - t0
    graph_time = emulator.clock.time() - start_virtual
    return {"renewed": report.renewed, "failed": report.failed, "wall_s": wall, "graph_time_s": graph_time,
            "throttled_429": sum(1 for e in list(emulator.request_log) if e["status"] == 429),
            "tenants": len(tenants), "ok": sum(1 for state in report.tenants.values() if state == "ok")}


def measure_tenants(tenants: int = TENANTS, per_tenant: int = PER_TENANT, latency: float = 0.0) -> dict:
    """``tenants`` × ``per_tenant`` renewals by the per-tenant renewer, against the same number in one tenant;
    ``latency``: seconds each Graph call takes (a ``$batch`` once), as Graph's do."""
    with _world("graphhook-bench-renewal-tenants-") as (emulator, r, public_url, settings):
        emulator.app_registration.multi_tenant = True
        emulator.latency = latency
        solo = [_seed_tenant(emulator, r, public_url, "solo", emulator.tenant(), tenants * per_tenant)]
        emulator.advance(6 * 24 * 3600 + 3600)  # ~23 h left: every one is inside the 24 h margin
        baseline = _sweep(emulator, r, settings, solo)  # one tenant: the write limit serializes 10,000 writes
        r.flushdb()  # else the next pass would delete solo's subscriptions: a tenant no longer configured
        many = []
        for i in range(tenants):
            tenant = emulator.add_tenant()
            emulator.consent(emulator.app_registration, tenant)
            many.append(_seed_tenant(emulator, r, public_url, f"t{i:03d}", tenant, per_tenant))
        emulator.advance(6 * 24 * 3600 + 3600)
        spread = _sweep(emulator, r, settings, many)  # the same number, spread over tenants paced apart
    return {"baseline": baseline, "tenants": spread,
            "ratio": baseline["graph_time_s"] / spread["graph_time_s"] if spread["graph_time_s"] else float("nan")}


def run_tenants(quick: bool = False, report: "Report | None" = None, latency_ms: int = 0) -> "Report":
    """100 tenants × 100 mailboxes (10 × 200 with ``quick``) against as many renewals in one tenant."""
    from benchmarks import Report

    tenants, per_tenant = (10, 200) if quick else (TENANTS, PER_TENANT)
    f = measure_tenants(tenants, per_tenant, latency_ms / 1000)
    b, t = f["baseline"], f["tenants"]
    report = report or Report("renewal sweep, many tenants")
    report.add("many tenants: subscriptions", f"{tenants} tenants x {per_tenant} mailboxes = {tenants * per_tenant}"
                                              + (f", {latency_ms} ms per Graph call" if latency_ms else ""))
    report.add("many tenants: renewals", f"{t['renewed']} ({t['failed']} failed, {t['throttled_429']} answered 429), "
                                         f"{t['ok']} of {t['tenants']} tenants ok")
    report.add("many tenants: Graph time", f"{t['graph_time_s']:.1f} s (wall {t['wall_s']:.1f} s)")
    report.add("baseline, one tenant: renewals", f"{b['renewed']} ({b['failed']} failed, {b['throttled_429']} 429)")
    report.add("baseline, one tenant: Graph time",
               f"{b['graph_time_s']:.1f} s (wall {b['wall_s']:.1f} s) incl. write-limit waits")
    report.add("many tenants: ratio one tenant / many", f"{f['ratio']:.1f}x faster")
    report.notes.append("many tenants: writes paced per tenant (900 per 20 s each), 8 tenants reconciled at a time; "
                        "the baseline is the same renewals in one tenant, which Graph's per-tenant limit serializes")
    return report


def run(quick: bool = False) -> "Report":
    """The ``make bench`` entry: 10,000 renewals (1,000 with ``quick``)."""
    from benchmarks import Report

    f = measure(1000 if quick else N)
    report = Report("renewal sweep")
    report.add("renewals", f"{f['renewals']} ({f['failed']} failed, {f['throttled_429']} answered 429)")
    report.add("CPU per renewal", f"{f['cpu_ms_per_renewal']:.3f} ms (target <= 2 ms)")
    report.add("bare PATCH baseline", f"{f['baseline_cpu_ms_per_patch']:.3f} ms CPU per call")
    report.add("ratio vs bare PATCH", f"{f['cpu_ratio_vs_bare_patch']:.2f}x")
    report.add("sweep wall time", f"{f['sweep_wall_s']:.1f} s (baseline {f['baseline_wall_s']:.1f} s)")
    report.add("sweep Graph time", f"{f['sweep_graph_time_s']:.1f} s incl. write-limit waits")
    report.notes.append("renewals go 20 per $batch; the limiter keeps under 900 writes per 20 s")
    return run_tenants(quick, report)


def main() -> int:
    """``python -m benchmarks.renewal [--quick] [--tenants [--latency-ms N]]``: both sweeps, or the many-tenant one."""
    quick = "--quick" in sys.argv
    latency = int(sys.argv[sys.argv.index("--latency-ms") + 1]) if "--latency-ms" in sys.argv else 0
    print((run_tenants(quick, latency_ms=latency) if "--tenants" in sys.argv else run(quick=quick)).render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
