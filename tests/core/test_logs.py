"""Structured logs: one JSON object per line, correlation ids (bound and the running RQ job's), secrets redacted."""

from __future__ import annotations

import io
import json
import logging

import pytest

from graphhook.core import jobformat, logs
from graphhook.core.settings import Settings
from tests.conftest import InProcessWorker

log = logging.getLogger("graphhook.test")


@pytest.fixture
def captured():
    """Configure logging into a buffer; restore the root logger afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    buffer = io.StringIO()
    handler = logs.configure(Settings(client_secret="Client-Secret-123", cache_key="cache-key-value-456",
                                      status_password="status-pw-789", status_user="ops",
                                      redis_url="redis://:redis-pw-abc@127.0.0.1:6379/0"),
                             process="test", stream=buffer, env={"MY_HOOK_SECRET": "hook-secret-xyz", "PATH": "/usr/bin"})
    yield buffer
    root.removeHandler(handler)
    root.setLevel(level)
    for h in root.handlers:
        h.filters = [f for f in h.filters if not isinstance(f, logs.RedactingFilter)]
    assert root.handlers == handlers


def lines(buffer: io.StringIO) -> list[dict]:
    """Every line is one JSON object."""
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_one_json_object_per_event_with_bound_ids(captured):
    with logs.bind(notification_id="n-1", message_id="AAMk-1", subscription_id=None):
        log.warning("first line\nwith a newline: %s", "arg")
        with logs.bind(rule="quarantine"):
            log.info("second")
    log.info("outside")
    first, second, outside = lines(captured)
    assert first["level"] == "warning" and first["logger"] == "graphhook.test" and first["process"] == "test"
    assert first["msg"] == "first line\nwith a newline: arg"
    assert (first["notification_id"], first["message_id"]) == ("n-1", "AAMk-1") and "subscription_id" not in first
    assert second["rule"] == "quarantine" and second["message_id"] == "AAMk-1"
    assert "message_id" not in outside and outside["ts"].endswith("Z")


def test_extra_ids_on_one_call(captured):
    log.info("delivered", extra={"webhook": "soar", "message_id": "m-9"})
    (line,) = lines(captured)
    assert (line["webhook"], line["message_id"]) == ("soar", "m-9")


def logging_job(text: str) -> str:
    """An RQ job that logs (run by a real worker below)."""
    logging.getLogger("graphhook.jobs").info("inside the job: %s", text)
    return text


def test_lines_logged_inside_an_rq_job_carry_its_id(captured, redis_client):
    queue = jobformat.queue("graphhook-logs-test", redis_client)
    job = queue.enqueue(logging_job, "hello")
    InProcessWorker([queue], connection=redis_client).work(burst=True)
    inside = [line for line in lines(captured) if line["msg"] == "inside the job: hello"]
    assert len(inside) == 1 and inside[0]["job_id"] == job.id


@pytest.mark.parametrize("template, args", [
    ("client secret %s", ("Client-Secret-123",)),
    ("cache key in a sentence: cache-key-value-456.", ()),
    ("status password %r", ("status-pw-789",)),
    ("webhook secret from a secret-looking variable: %s", ("hook-secret-xyz",)),
    ("connecting to %s", ("redis://:redis-pw-abc@127.0.0.1:6379/0",)),
    ("headers %s", ({"Authorization": "Bearer eyJ0eXAiOiJKV1Qi.eyJhdWQiOiJodHRwcz.c2lnbmF0dXJl"},)),
    ("notification %s", ({"subscriptionId": "s1", "clientState": "state-value-that-is-secret"},)),
    ('body {"clientState":"state-value-that-is-secret","changeType":"created"}', ()),
    ("form client_secret=%s&grant_type=client_credentials", ("form-secret-value",)),
])
def test_secrets_never_reach_the_log(captured, template, args):
    log.info(template, *args)
    text = captured.getvalue()
    for secret in ("Client-Secret-123", "cache-key-value-456", "status-pw-789", "hook-secret-xyz", "redis-pw-abc",
                   "eyJ0eXAiOiJKV1Qi", "state-value-that-is-secret", "form-secret-value"):
        assert secret not in text
    assert "[REDACTED]" in lines(captured)[0]["msg"]


def test_secrets_in_tracebacks_are_redacted(captured):
    try:
        raise RuntimeError("token request failed for client_secret=Client-Secret-123")
    except RuntimeError:
        log.exception("token refresh failed")
    (line,) = lines(captured)
    assert "RuntimeError" in line["exc"] and "Client-Secret-123" not in line["exc"]


def test_ordinary_text_is_left_alone(captured):
    message = "webhook 'soar': environment variable SOAR_WEBHOOK_SECRET is unset; secret_env: SOAR_WEBHOOK_SECRET"
    log.warning(message)
    log.info("rule %r matched message %s", "phish", "AAMkAGI2")
    assert [line["msg"] for line in lines(captured)] == [message, "rule 'phish' matched message AAMkAGI2"]


def test_webhook_secret_registered_by_the_config_loader(captured, tmp_path):
    from workers.triggers.config import load_config

    path = tmp_path / "graphhook.yaml"
    path.write_text("webhooks:\n  soar: {url: 'http://127.0.0.1:9/hook', secret_env: ODDLY_NAMED}\n")
    config = load_config(str(path), env={"ODDLY_NAMED": "signing-key-of-the-soar"})
    assert config.webhooks["soar"].secret == "signing-key-of-the-soar"
    log.info("signing with %s", "signing-key-of-the-soar")
    assert "signing-key-of-the-soar" not in captured.getvalue()


def test_text_format_for_terminals(redis_client):
    root = logging.getLogger()
    buffer = io.StringIO()
    handler = logs.configure(Settings(log_format="text", client_secret="Client-Secret-123"), stream=buffer)
    try:
        with logs.bind(message_id="m-1"):
            log.info("using %s", "Client-Secret-123")
    finally:
        root.removeHandler(handler)
        for h in root.handlers:
            h.filters = [f for f in h.filters if not isinstance(f, logs.RedactingFilter)]
    text = buffer.getvalue()
    assert "INFO graphhook.test: using [REDACTED] message_id=m-1" in text and not text.startswith("{")


def test_configuring_twice_keeps_one_handler(captured):
    root = logging.getLogger()
    again = logs.configure(process="again", stream=captured)
    try:
        log.info("once")
        assert sum(1 for line in captured.getvalue().splitlines() if '"once"' in line) == 1
    finally:
        root.removeHandler(again)
