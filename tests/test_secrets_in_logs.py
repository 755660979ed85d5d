"""The demo, run with known secret values and DEBUG logging: no secret appears in any log line of any process.

Searched: everything the demo process wrote (its receiver, emulator and
Graph client log through the same set-up as ``graphhook demo``) and the logs of
its worker subprocesses. Secrets: the client secret, the token-cache key, the
status page's password and token, the demo's webhook signing secret, every
subscription's clientState (read back from Redis) and every access token MSAL
cached (decrypted from Redis with the known cache key).
"""

from __future__ import annotations

import io
import json
import logging
import tempfile

import pytest

from graphhook.cli import configure_logging
from graphhook.core import keys, logs
from graphhook.core.settings import Settings
from graphhook.demo import run_demo
from workers.graph.auth import cache_cipher

KNOWN = {
    "AZURE_CLIENT_SECRET": "Demo-Client-Secret-4f8a2c",
    "GRAPHHOOK_CACHE_KEY": "9b1e7d3a5c04f8a2c61c0e25b9f77d4a3c8e1f2b6d9a0c5e7f1b3d5a7c9e2f4b",
    "GRAPHHOOK_STATUS_PASSWORD": "demo-status-password-61c0",
    "GRAPHHOOK_STATUS_TOKEN": "demo-status-token-e25b9f",
    "GRAPHHOOK_DEMO_WEBHOOK_SECRET": "demo-webhook-signing-key-77d4",
}


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in root.handlers:
        handler.filters = [f for f in handler.filters if not isinstance(f, logs.RedactingFilter)]
    root.setLevel(level)


def test_demo_logs_no_secret(redis_server, redis_client, tmp_path, monkeypatch, capsys, restore_logging):
    for name, value in {**KNOWN, "REDIS_URL": redis_server.url, "GRAPHHOOK_STATUS_USER": "ops",
                        "GRAPHHOOK_LOG_LEVEL": "DEBUG"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the demo's work directory (worker.log) lands here
    configure_logging("demo")  # what `graphhook demo` does first
    out = io.StringIO()
    # Ten messages: the tenth is the phish that is quarantined and sent to the signed webhook.
    assert run_demo(messages=10, workers=2, client_secret=KNOWN["AZURE_CLIENT_SECRET"], out=out) == 0, out.getvalue()
    captured = capsys.readouterr()

    worker_logs = sorted(tmp_path.glob("graphhook-demo-*/worker.log"))
    assert worker_logs
    worker_text = "\n".join(p.read_text() for p in worker_logs)
    demo_lines = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    worker_lines = [json.loads(line) for line in worker_text.splitlines() if line.startswith("{")]
    assert any(line.get("process") == "demo" for line in demo_lines)
    handled = [line for line in worker_lines if line["logger"] == "graphhook.notifications"]
    assert len(handled) == 10 and all(line["notification_id"] and line["message_id"] and line["job_id"]
                                      for line in handled)
    assert any(line["logger"] == "graphhook.webhooks" and line.get("job_id") for line in worker_lines)

    secrets = dict(KNOWN)
    for sid in redis_client.smembers(keys.SUBSCRIPTIONS):
        secrets[f"clientState of {sid.decode()}"] = redis_client.hget(keys.subscription(sid.decode()), "clientState").decode()
    cache = json.loads(cache_cipher(Settings(cache_key=KNOWN["GRAPHHOOK_CACHE_KEY"]), None)
                       .decrypt(redis_client.get(keys.TOKEN_CACHE)))
    for n, entry in enumerate(cache["AccessToken"].values()):
        secrets[f"access token {n}"] = entry["secret"]
    assert len(secrets) >= len(KNOWN) + 2  # a clientState and a token at least

    everything = {"demo stderr": captured.err, "demo stdout": captured.out + out.getvalue(), "workers": worker_text}
    assert len(captured.err.splitlines()) > 10 and len(worker_text.splitlines()) > 20  # the logs were really captured
    leaks = [(what, where) for what, value in secrets.items() for where, text in everything.items() if value in text]
    assert leaks == []
