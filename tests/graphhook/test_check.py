"""``graphhook check``: each failure mode against the real emulator and real Redis, read as a user reads it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap

import pytest

from graphhook.commands.check import run_checks
from graphhook.redis_server import RedisServer
from tests.conftest import ROOT
from tests.deploy.certs import load_cert, self_signed

CONFIG = """
    mailboxes:
      - alice@contoso.com
    rules:
      - name: forward-invoices
        when: always
        actions:
          - forward: {to: [ap@contoso.com]}
"""


@pytest.fixture
def config_path(tmp_path):
    path = tmp_path / "graphhook.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    return path


@pytest.fixture
def env(emulator, redis_server, receiver, config_path):
    """A complete, correct environment: emulator identity, running receiver, real Redis, valid config."""
    emulator.add_user("alice@contoso.com")  # the configured mailbox, which the check reads
    return {**emulator.environment(), "REDIS_URL": redis_server.url, "PUBLIC_URL": receiver.url,
            "GRAPHHOOK_CONFIG": str(config_path)}


def item(report, name):
    """The one result called ``name``."""
    found = [r for r in report.results if r.name == name]
    assert found, f"no check named {name!r} in:\n{report.render()}"
    return found[0]


def test_correct_deployment_passes_every_check(env, emulator):
    report = run_checks(env)
    text = report.render()
    assert not report.failed, text
    assert {r.status for r in report.results} <= {"ok", "skip"}, text
    assert "got an application token" in item(report, "token").detail
    assert "echoed the validation token" in item(report, "handshake /notifications").detail
    assert "echoed the validation token" in item(report, "handshake /lifecycle").detail
    assert "noeviction" in item(report, "redis maxmemory-policy").detail
    assert emulator.client_secret not in text


def test_wrong_tenant_says_tenant_id_is_wrong(env, emulator):
    report = run_checks({**env, "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000000"}, skip=["public-url"])
    token = item(report, "token")
    assert token.status == "fail" and report.failed
    assert "AADSTS90002" in token.detail
    assert "AZURE_TENANT_ID is wrong" in token.fix and "Directory (tenant) ID" in token.fix


def test_unknown_application_says_client_id_is_wrong(env, emulator):
    report = run_checks({**env, "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555"}, skip=["public-url"])
    token = item(report, "token")
    assert "AADSTS700016" in token.detail and "11111111-2222-3333-4444-555555555555" in token.detail
    assert "AZURE_CLIENT_ID is wrong" in token.fix and "another tenant" in token.fix


def test_wrong_secret_asks_about_secret_id_versus_value_and_never_prints_it(env, emulator):
    wrong = "8f3c2a1e-0b7d-4c55-9e61-2f4a9d0c7b13"  # looks like a Secret ID, as users paste it
    report = run_checks({**env, "AZURE_CLIENT_SECRET": wrong}, skip=["public-url"])
    token = item(report, "token")
    assert "AADSTS7000215" in token.detail
    assert "secret ID instead of its value" in token.fix
    assert wrong not in report.render() and emulator.client_secret not in report.render()


def test_expired_secret_says_create_a_new_one(env, emulator):
    emulator.app_registration.secret_expires = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    report = run_checks(env, skip=["public-url"])
    token = item(report, "token")
    assert "expired" in token.detail and "AADSTS7000222" in token.detail
    assert "create a new client secret" in token.fix


def test_certificate_credential_unregistered_then_registered(env, emulator, tmp_path):
    cert_path, key_path = self_signed(tmp_path, "graphhook-client")
    pem = tmp_path / "credential.pem"
    pem.write_bytes(key_path.read_bytes() + cert_path.read_bytes())
    cert_env = {**env, "AZURE_CLIENT_SECRET": "", "AZURE_CLIENT_CERTIFICATE_PATH": str(pem)}

    token = item(run_checks(cert_env, skip=["public-url"]), "token")
    assert token.status == "fail" and "AADSTS700027" in token.detail
    assert "upload the public certificate" in token.fix

    emulator.app_registration.certificates.append(load_cert(cert_path))
    token = item(run_checks(cert_env, skip=["public-url"]), "token")
    assert token.status == "ok" and "(certificate)" in token.detail


def test_missing_mail_read_fails_and_read_basic_warns(env, emulator):
    emulator.app_registration.roles = ("Mail.ReadBasic.All", "User.Read.All", "Mail.Send")
    report = run_checks(env, skip=["public-url"])
    mail_read = item(report, "permission Mail.Read")
    assert mail_read.status == "fail"
    assert "no message can be fetched" in mail_read.detail and "Grant admin consent" in mail_read.fix
    basic = item(report, "permission Mail.ReadBasic.All")
    assert basic.status == "warn" and "attachments and sub-folders are blocked" in basic.detail
    assert item(report, "permission Mail.Send").status == "ok"


def test_permission_needed_by_a_rule_names_the_rule(env, emulator):
    emulator.app_registration.roles = ("Mail.Read", "User.Read.All")
    report = run_checks(env, skip=["public-url"])
    send = item(report, "permission Mail.Send")
    assert send.status == "fail"
    assert "rule 'forward-invoices' (forward)" in send.detail
    # No rule moves or deletes mail, so Mail.ReadWrite is not demanded.
    assert item(report, "permission Mail.ReadWrite").status == "skip"
    assert item(report, "permission Mail.Read").status == "ok"


def test_mail_readwrite_satisfies_mail_read(env, emulator):
    emulator.app_registration.roles = ("Mail.ReadWrite", "User.Read.All", "Mail.Send")
    report = run_checks(env, skip=["public-url"])
    assert item(report, "permission Mail.Read").detail.startswith("granted (through Mail.ReadWrite)")


def test_public_url_must_be_https(env):
    report = run_checks({**env, "PUBLIC_URL": "http://graphhook.example.com"}, skip=["token", "redis"])
    public = item(report, "PUBLIC_URL")
    assert public.status == "fail" and "is not https" in public.detail
    assert report.failed


def test_public_url_pointing_elsewhere_fails_the_handshake(env, emulator):
    # The emulator is an https server, but not a graphhook receiver.
    report = run_checks({**env, "PUBLIC_URL": emulator.url}, skip=["token", "redis"])
    handshake = item(report, "handshake /notifications")
    assert handshake.status == "fail" and "not 200" in handshake.detail


def test_public_url_nobody_listens_on(env):
    from graphhook.redis_server import free_port

    report = run_checks({**env, "PUBLIC_URL": f"https://127.0.0.1:{free_port()}"}, skip=["token", "redis"])
    handshake = item(report, "handshake /lifecycle")
    assert "cannot be reached" in handshake.detail and "web process is running" in handshake.fix


def test_receiver_echoing_the_token_still_encoded_is_caught(env, emulator):
    from urllib.parse import quote

    from flask import Flask, request

    from graphhook.devserver import BackgroundServer

    broken = Flask("encoding-echo")

    @broken.post("/notifications")
    @broken.post("/lifecycle")
    def echo():
        return quote(request.args["validationToken"]), 200, {"Content-Type": "text/plain"}

    pair = emulator.ca.issue("broken")
    server = BackgroundServer(broken, cert=pair.cert_path, key=pair.key_path).start()
    try:
        report = run_checks({**env, "PUBLIC_URL": server.url}, skip=["token", "redis"])
    finally:
        server.stop()
    assert "it echoed it URL-encoded" in item(report, "handshake /notifications").detail


def test_redis_unreachable(env):
    from graphhook.redis_server import free_port

    report = run_checks({**env, "REDIS_URL": f"redis://:hunter2-password@127.0.0.1:{free_port()}/0"},
                        skip=["token", "public-url"])
    redis_item = item(report, "redis")
    assert redis_item.status == "fail" and "cannot be reached" in redis_item.detail
    assert "hunter2-password" not in report.render() and ":***@127.0.0.1" in redis_item.detail


def test_redis_evicting_policy_warns_but_passes(env, tmp_path):
    with RedisServer(tmp_path / "lru") as server:
        import redis

        redis.Redis.from_url(server.url).config_set("maxmemory-policy", "allkeys-lru")
        report = run_checks({**env, "REDIS_URL": server.url}, skip=["token", "public-url"])
    policy = item(report, "redis maxmemory-policy")
    assert policy.status == "warn" and "allkeys-lru" in policy.detail and "evict queued jobs" in policy.detail
    assert "noeviction" in policy.fix
    assert not report.failed


def _cli(args, env):
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "graphhook", "check", *args], env=full,
                          capture_output=True, text=True, timeout=60)


def test_config_only_fails_the_release_on_a_broken_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    when: always\n    actions: [{teleport: Inbox}]\n")
    proc = _cli(["--config-only"], {"GRAPHHOOK_CONFIG": str(bad)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "unknown action 'teleport'" in proc.stdout and "[FAIL] configuration" in proc.stdout
    # Nothing but the file is looked at: no token, no Redis, no URL.
    assert "token" not in proc.stdout and "redis" not in proc.stdout


def test_config_only_passes_a_valid_file(config_path):
    proc = _cli(["--config-only"], {"GRAPHHOOK_CONFIG": str(config_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[ ok ] configuration" in proc.stdout and "1 mailbox(es), 1 rule(s)" in proc.stdout


def test_cli_exit_status_follows_the_checklist(env, emulator):
    ok = _cli([], env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 failed" in ok.stdout
    bad = _cli([], {**env, "AZURE_CLIENT_SECRET": "not-the-secret-value"})
    assert bad.returncode == 1
    assert "AADSTS7000215" in bad.stdout and "not-the-secret-value" not in bad.stdout + bad.stderr


def test_missing_configuration_file_points_at_the_starter(tmp_path):
    proc = _cli(["--config-only"], {"GRAPHHOOK_CONFIG": str(tmp_path / "absent.yaml")})
    assert proc.returncode == 1
    assert "configuration file not found" in proc.stdout and "graphhook.starter.yaml" in proc.stdout


def test_handshake_slower_than_the_limit_fails(emulator):
    import time as _time

    from flask import Flask, request

    from graphhook.devserver import BackgroundServer
    from workers.check.infra import check_handshake

    slow = Flask("slow-echo")

    @slow.post("/notifications")
    def echo():
        _time.sleep(1.0)
        return request.args["validationToken"], 200, {"Content-Type": "text/plain"}

    pair = emulator.ca.issue("slow")
    server = BackgroundServer(slow, cert=pair.cert_path, key=pair.key_path).start()
    try:
        # Graph's limit is 10 s; a 0.3 s limit shows the same failure without a 10 s test.
        result = check_handshake(server.url, "/notifications", timeout=0.3)
    finally:
        server.stop()
    assert result.status == "fail" and "did not answer within 0.3 s" in result.detail
    assert "web process" in result.fix


def test_redis_wrong_password_says_so_without_printing_it(env, tmp_path):
    import redis

    with RedisServer(tmp_path / "auth") as server:
        redis.Redis.from_url(server.url).config_set("requirepass", "the-right-password")
        wrong = server.url.replace("redis://", "redis://:a-wrong-password@")
        report = run_checks({**env, "REDIS_URL": wrong}, skip=["token", "public-url"])
    redis_item = item(report, "redis")
    assert redis_item.status == "fail" and "refused the password" in redis_item.detail
    assert "a-wrong-password" not in report.render()
