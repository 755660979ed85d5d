"""Peak memory while fetching a message with a large attachment: streaming vs a naive in-memory fetch.

The emulator runs in this process; each fetch runs in a fresh child process,
which resets the kernel's peak-RSS mark, then reports its resident set size before the
fetch and the peak (``VmHWM``) after, so the growth is the fetch's alone.

- streaming: graphhook's :class:`workers.records.messages.Fetcher` — the reply is streamed,
  the long ``contentBytes`` string is base64-decoded and SHA-256-hashed as it
  arrives and spooled to a temporary file past ``GRAPHHOOK_ATTACHMENT_SPOOL_BYTES``;
- naive (baseline, same run): ``requests.get(...).json()``, ``b64decode``, ``sha256``.

Target (issue 5): a 100 MB attachment processed with peak RSS growth ≤ 50 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import Report


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM), so start-up peaks do not count (Linux ≥ 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def child(mode: str, user_id: str, message_id: str) -> dict:
    """Fetch one message in this (fresh) process; return sizes, hash and memory figures."""
    import base64
    import hashlib

    from graphhook.core.settings import Settings
    from workers import runtime
    from workers.records.messages import Fetcher, FetchOptions

    settings = Settings.from_env()
    ctx = runtime.build(settings)
    ctx.tokens.token()  # connections, imports and the token are warm before measuring
    ctx.graph.get(f"users/{user_id}", params={"$select": "id"})
    _reset_peak()
    before = _status_kb("VmRSS")
    started = time.perf_counter()
    if mode == "streaming":
        fetcher = Fetcher(ctx.graph, user_id, FetchOptions.from_settings(settings))
        record = fetcher.record(message_id, mailbox="bench")
        big = max(record["attachments"], key=lambda a: a["size"] or 0)
        size, digest = big["size"], big["sha256"]
        fetcher.close()
    else:
        body = ctx.graph.get(f"users/{user_id}/messages/{message_id}", params={"$expand": "attachments"})
        data = max((base64.b64decode(a["contentBytes"]) for a in body["attachments"]), key=len)
        size, digest = len(data), hashlib.sha256(data).hexdigest()
    elapsed = time.perf_counter() - started
    peak = _status_kb("VmHWM")
    return {"mode": mode, "size": size, "sha256": digest, "rss_before_kb": before, "peak_kb": peak,
            "growth_mb": (peak - before) / 1024, "seconds": elapsed}


def run(quick: bool = False) -> Report:
    """Run both fetches against one message and return the report."""
    import hashlib

    from emulator import Emulator
    from graphhook.redis_server import RedisServer

    size_mb = 20 if quick else 100
    data = os.urandom(size_mb * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    work = Path(tempfile.mkdtemp(prefix="graphhook-bench-attach-"))
    report = Report(f"peak memory fetching a {size_mb} MB attachment (streaming vs naive)")
    with RedisServer(work / "redis") as server, Emulator(work / "emulator") as emulator:
        user = emulator.add_user("bench@contoso.com")
        message = emulator.deliver("bench@contoso.com", {"subject": "large", "attachments": [
            {"kind": "file", "name": "archive.zip", "content": data}]})
        del data
        env = {**os.environ, **emulator.environment(), "REDIS_URL": server.url,
               "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "TMPDIR": str(work)}
        results = {}
        for mode in ("streaming", "naive"):
            out = subprocess.run([sys.executable, "-m", "benchmarks.attachments_memory", "--child", mode,
                                  user.id, message["id"]], env=env, capture_output=True, text=True, timeout=600)
            if out.returncode != 0:
                raise RuntimeError(f"{mode} child failed: {out.stderr[-500:]}")
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    stream, naive = results["streaming"], results["naive"]
    for r in (stream, naive):
        if r["sha256"] != digest:
            raise RuntimeError(f"{r['mode']} fetch produced the wrong SHA-256")
    report.add("attachment", f"{size_mb} MB, SHA-256 verified in both modes")
    ok = stream["growth_mb"] <= 50
    report.add("streaming peak RSS growth", f"{stream['growth_mb']:.1f} MB in {stream['seconds']:.1f} s "
               f"(target ≤ 50 MB: {'met' if ok else 'NOT met'})")
    report.add("naive peak RSS growth", f"{naive['growth_mb']:.1f} MB in {naive['seconds']:.1f} s")
    report.add("ratio naive / streaming", f"{naive['growth_mb'] / max(stream['growth_mb'], 0.1):.1f}×")
    return report


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(*sys.argv[2:5])))
    else:
        print(run(quick="--quick" in sys.argv).render())
