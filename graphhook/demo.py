"""``graphhook demo``: the whole pipeline on one machine, against the emulator.

Redis (embedded unless REDIS_URL is set) → emulator (HTTPS) → receiver (HTTPS)
→ subscription with the real handshake → N messages delivered → RQ workers
fetch each through MSAL + Graph → the ``record`` trigger fires → summary.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emulator import Emulator
from emulator.seed import PHISHING
from graphhook.core import keys
from graphhook.core.settings import Settings
from receiver.app import create_app

from .devserver import BackgroundServer
from .redis_server import RedisServer
from .sink import WebhookSink

DEMO_MAILBOX = "secops@contoso.com"
DEMO_CONFIG = """\
version: 1
organisation:
  domains: [contoso.com]
mailboxes:
  - {mailbox}
webhooks:
  soar:
    url: {sink}
    secret_env: GRAPHHOOK_DEMO_WEBHOOK_SECRET
rules:
  - name: quarantine-phishing
    when:
      all:
        - not: {{sender_domain: [contoso.com]}}
        - authentication: {{dmarc: [fail]}}
        - subject: "(storage|mailbox).*(limit|reached)"
    actions:
      - move: Quarantine
      - categorise: [Phishing]
      - webhook: soar
    stop: true
"""


def _message(i: int) -> dict:
    if i % 10 == 9:
        return {**PHISHING, "subject": f"{PHISHING['subject']} #{i + 1}"}
    return {
        "subject": f"Invoice {1000 + i} for review",
        "from": {"name": f"Supplier {i % 7}", "address": f"billing{i % 7}@fabrikam.com"},
        "body": f"Please find invoice {1000 + i} attached.",
        "attachments": [{"kind": "file", "name": f"invoice-{1000 + i}.txt", "content": f"invoice {i}".encode()}],
    }


def run_demo(*, messages: int = 20, workers: int = 2, timeout: float = 120.0, out=sys.stdout,
             client_secret: str | None = None) -> int:
    """Run the demo; return 0 when every message fired its trigger within ``timeout`` seconds.

    ``client_secret``: the emulator app's secret (default random); tests pass a known one.
    """
    def say(text: str) -> None:
        print(text, file=out, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="graphhook-demo-"))
    started = time.monotonic()
    redis_server = None
    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url:
        redis_server = RedisServer(workdir / "redis").start()
        redis_url = redis_server.url
        say(f"• embedded Redis on {redis_url}")
    else:
        say("• using REDIS_URL")
    emulator = Emulator(workdir / "emulator", client_secret=client_secret).start()
    emulator.add_user(DEMO_MAILBOX, "Security Operations")
    say(f"• Graph emulator on {emulator.url} (CA {emulator.ca_path})")

    # Random unless given (the secrets-in-logs test runs the demo with known secrets).
    webhook_secret = os.environ.get("GRAPHHOOK_DEMO_WEBHOOK_SECRET") or secrets.token_urlsafe(24)
    sink = WebhookSink(webhook_secret).start()  # the SOAR stand-in: verifies every signature
    config_path = workdir / "graphhook.yaml"
    config_path.write_text(DEMO_CONFIG.format(mailbox=DEMO_MAILBOX, sink=sink.url))
    env = {**os.environ, **emulator.environment(), "REDIS_URL": redis_url,
           "GRAPHHOOK_QUEUE": f"graphhook-demo-{os.getpid()}", "GRAPHHOOK_CONFIG": str(config_path),
           "GRAPHHOOK_DEMO_WEBHOOK_SECRET": webhook_secret}
    pair = emulator.ca.issue("receiver")
    procs: list[subprocess.Popen] = []
    receiver = None
    saved_ca = os.environ.get("REQUESTS_CA_BUNDLE")
    try:
        settings = Settings.from_env({**env, "PUBLIC_URL": "https://127.0.0.1"})
        app = create_app(settings)
        receiver = BackgroundServer(app, cert=pair.cert_path, key=pair.key_path).start()
        env["PUBLIC_URL"] = receiver.url
        settings = settings.replace(public_url=receiver.url)
        os.environ["REQUESTS_CA_BUNDLE"] = str(emulator.ca_path)  # MSAL and requests in this process
        say(f"• receiver on {receiver.url}")
        r = app.config["REDIS"]
        r.delete(keys.EVENTS)

        for _ in range(workers):
            procs.append(subprocess.Popen([sys.executable, "-m", "graphhook", "worker"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=open(workdir / "worker.log", "ab")))
        say(f"• {workers} RQ worker process(es) started (log: {workdir / 'worker.log'})")

        from workers import runtime
        from workers.subscriptions import operations

        ctx = runtime.build(settings, r)
        sub = operations.create(ctx.graph, r, settings, DEMO_MAILBOX, "inbox")
        say(f"• subscribed to {DEMO_MAILBOX}/inbox (subscription {sub.id[:8]}…, handshake answered)")

        delivered_at: dict[str, float] = {}
        for i in range(messages):
            message = emulator.deliver(DEMO_MAILBOX, _message(i))
            delivered_at[message["id"]] = time.time()
        say(f"• delivered {messages} message(s); waiting for triggers…")

        deadline = time.monotonic() + timeout
        fired: list[dict] = []
        last = -1
        phishing = sum(1 for i in range(messages) if i % 10 == 9)
        quarantine = emulator.mail.user(DEMO_MAILBOX)
        while time.monotonic() < deadline:
            fired = [json.loads(line) for line in r.lrange(keys.EVENTS, 0, -1)]
            if len(fired) != last:
                last = len(fired)
                say(f"  {len(fired)}/{messages} triggers fired")
            if len(fired) >= messages and len(sink.snapshot()) >= phishing:
                break
            time.sleep(0.1)
        quarantined = _folder_count(quarantine, "Quarantine")
        latencies = sorted(e["firedAt"] - delivered_at[e["email"]["id"]] for e in fired if e["email"]["id"] in delivered_at)
        accepted = _metric(app, "graphhook_notifications_accepted_total", kind="change")
        unique = len({e["email"]["id"] for e in fired})
        with_attachments = sum(1 for e in fired if e["email"]["attachments"])
        say("")
        say("Summary")
        say(f"  messages delivered      {messages}")
        say(f"  notifications accepted  {int(accepted)}")
        say(f"  messages fetched        {unique} ({with_attachments} with attachments)")
        say(f"  triggers fired          {len(fired)}")
        say(f"  rule quarantine-phishing matched {sum(1 for e in fired if 'quarantine-phishing' in e.get('rules', []))}"
            f"; moved to Quarantine {quarantined}; signed webhooks received {len(sink.snapshot())}"
            f" ({sink.bad_signatures} refused)")
        if latencies:
            p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
            say(f"  latency p50 / p95       {statistics.median(latencies) * 1000:.0f} ms / {p95 * 1000:.0f} ms")
        if fired:
            sample = fired[-1]["email"]
            say(f"  last email              {sample['subject']!r} from {sample['from']['address']}")
        say(f"  wall time               {time.monotonic() - started:.1f} s")
        ok = unique == messages and len(fired) == messages and quarantined == phishing and len(sink.snapshot()) == phishing
        say("OK: every message fired its trigger exactly once" if ok else "FAILED: triggers missing or repeated")
        return 0 if ok else 1
    finally:
        if saved_ca is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = saved_ca
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if receiver is not None:
            receiver.stop()
        sink.stop()
        emulator.stop()
        if redis_server is not None:
            redis_server.stop()


def _folder_count(user, name: str) -> int:
    """Messages in the user's folder named ``name`` (0 if the folder does not exist yet)."""
    return sum(len(f.messages) for f in user.folders.values() if f.display_name == name)


def _metric(app, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (e.g. over every tenant)."""
    from prometheus_client.parser import text_string_to_metric_families

    body, _ = app.config["METRICS"].render()
    return sum(sample.value for family in text_string_to_metric_families(body.decode()) for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())
