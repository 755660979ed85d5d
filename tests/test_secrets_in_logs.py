"""The demo, run with known secret values and DEBUG logging: no secret appears in any log line of any process.

Searched: everything the demo process wrote (its receiver, emulator and
Graph client log through the same set-up as ``graphhook demo``) and the logs of
its worker subprocesses. Secrets: the client secret, the token-cache key, the
status page's password and token, a webhook signing secret held in a variable
whose name does not look secret, every subscription's clientState (read back
from Redis), every access token MSAL cached (decrypted from Redis with the
known cache key), and the webhook signatures that were sent.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile

import pytest

from graphhook.cli import configure_logging
from graphhook.demo import run_demo
from receiver import keys, logs
from receiver.settings import Settings
from tests.workers.sink import Sink
from workers.auth import cache_cipher

KNOWN = {
    "AZURE_CLIENT_SECRET": "Demo-Client-Secret-4f8a2c",
    "GRAPHHOOK_CACHE_KEY": "demo-cache-key-9b1e7d3a5c",
    "GRAPHHOOK_STATUS_PASSWORD": "demo-status-password-61c0",
    "GRAPHHOOK_STATUS_TOKEN": "demo-status-token-e25b9f",
    "HOOK_SIGNING": "demo-webhook-signing-key-77d4",  # named in the config's secret_env
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
    sink = Sink().start()
    config = tmp_path / "graphhook.yaml"
    config.write_text(f"webhooks:\n  soar: {{url: '{sink.url}', secret_env: HOOK_SIGNING, all_mail: true}}\n")
    for name, value in {**KNOWN, "REDIS_URL": redis_server.url, "GRAPHHOOK_CONFIG": str(config),
                        "GRAPHHOOK_STATUS_USER": "ops", "GRAPHHOOK_LOG_LEVEL": "DEBUG"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the demo's work directory (worker.log) lands here
    try:
        configure_logging("demo")  # what `graphhook demo` does first
        out = io.StringIO()
        assert run_demo(messages=4, workers=2, client_secret=KNOWN["AZURE_CLIENT_SECRET"], out=out) == 0
    finally:
        sink.stop()
    captured = capsys.readouterr()

    worker_logs = sorted(tmp_path.glob("graphhook-demo-*/worker.log"))
    assert worker_logs
    worker_text = "\n".join(p.read_text() for p in worker_logs)
    demo_lines = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    worker_lines = [json.loads(line) for line in worker_text.splitlines() if line.startswith("{")]
    assert any(line.get("process") == "demo" for line in demo_lines)
    assert any(line.get("process") == "worker" and line.get("job_id") for line in worker_lines)
    assert any(line.get("notification_id") and line.get("message_id") for line in worker_lines)

    secrets = dict(KNOWN)
    for sid in redis_client.smembers(keys.SUBSCRIPTIONS):
        secrets[f"clientState of {sid.decode()}"] = redis_client.hget(keys.subscription(sid.decode()), "clientState").decode()
    cache = json.loads(cache_cipher(Settings(cache_key=KNOWN["GRAPHHOOK_CACHE_KEY"]), None)
                       .decrypt(redis_client.get(keys.TOKEN_CACHE)))
    for n, entry in enumerate(cache["AccessToken"].values()):
        secrets[f"access token {n}"] = entry["secret"]
    for n, request in enumerate(sink.requests):
        secrets[f"webhook signature {n}"] = request.headers["X-Graphhook-Signature"].split("v1=")[1]
    assert len(secrets) >= len(KNOWN) + 3 and sink.requests  # a clientState, a token and a signature at least

    everything = {"demo stderr": captured.err, "demo stdout": captured.out + out.getvalue(), "workers": worker_text}
    assert len(captured.err.splitlines()) > 20 and len(worker_text.splitlines()) > 20
    leaks = [(what, where) for what, value in secrets.items() for where, text in everything.items() if value in text]
    assert leaks == []
