"""Tokens: one shared, encrypted MSAL cache in Redis; one token request for N jobs in M worker processes."""

from __future__ import annotations

import base64
import json
import secrets

import pytest

from graphhook.core import jobformat, keys
from graphhook.core.errors import AuthError, ConfigError
from graphhook.core.settings import Settings
from tests.conftest import wait_for
from workers.graph.auth import TokenProvider


def test_cache_in_redis_is_encrypted_and_shared_between_providers(emulator, settings, redis_client):
    first = TokenProvider(settings, redis_client)
    token = first.token()
    blob = redis_client.get(keys.TOKEN_CACHE)
    assert blob and token.encode() not in blob and b"access_token" not in blob.lower()
    assert b"AccessToken" not in blob  # MSAL's cache JSON is not readable at rest
    second = TokenProvider(settings, redis_client)
    assert second.token() == token
    assert emulator.directory.tokens_issued == 1
    assert first.requests_made + second.requests_made == 1


OLD_KEY, NEW_KEY = secrets.token_hex(32), base64.b64encode(bytes(range(32))).decode()


def test_a_different_cache_key_cannot_read_the_cache_and_replaces_it(emulator, settings, redis_client):
    TokenProvider(settings.replace(cache_key=OLD_KEY), redis_client).token()
    other = TokenProvider(settings.replace(cache_key=NEW_KEY), redis_client)
    other.token()  # unreadable cache: a new token, no crash
    assert emulator.directory.tokens_issued == 2
    assert TokenProvider(settings.replace(cache_key=NEW_KEY), redis_client).token()
    assert emulator.directory.tokens_issued == 2


def test_refused_credential_raises_auth_error_without_the_secret(emulator, settings, redis_client):
    bad = settings.replace(client_secret="wrong-secret-value")
    with pytest.raises(AuthError) as caught:
        TokenProvider(bad, redis_client).token()
    assert caught.value.code == "invalid_client"
    assert "wrong-secret-value" not in str(caught.value)


def test_n_jobs_in_m_worker_processes_cause_one_token_request(emulator, live_settings, redis_client, start_worker):
    user = emulator.add_user("erin@contoso.com")
    messages = [emulator.deliver("erin@contoso.com", {"subject": f"job {i}"}) for i in range(12)]
    for _ in range(3):
        start_worker()
    wait_for(lambda: len(redis_client.smembers(f"rq:workers:{live_settings.queue_name}")) >= 3, timeout=30)
    before = emulator.directory.tokens_issued
    queue = jobformat.queue(live_settings.queue_name, redis_client)
    for m in messages:
        queue.enqueue("workers.jobs.process_notifications", [{
            "subscriptionId": "sub-auth", "tenantId": live_settings.tenant_id, "changeType": "created",
            "resource": f"Users/{user.id}/Messages/{m['id']}", "resourceData": {"id": m["id"]}}])
    events = wait_for(lambda: (e := redis_client.lrange(keys.EVENTS, 0, -1)) and len(e) >= 12 and e, timeout=60)
    assert sorted(json.loads(e)["email"]["subject"] for e in events) == sorted(m["subject"] for m in messages)
    assert emulator.directory.tokens_issued - before == 1


def _certificate_pem(tmp_path):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "graphhook test app")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    path = tmp_path / "app.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM))
    return cert, path


def test_certificate_credential_gets_a_token_and_its_key_encrypts_the_cache(emulator, settings, redis_client, tmp_path):
    cert, path = _certificate_pem(tmp_path)
    emulator.app_registration.certificates.append(cert)
    with_cert = settings.replace(client_secret="", client_certificate_path=str(path))
    token = TokenProvider(with_cert, redis_client).token()
    assert token and emulator.directory.tokens_issued == 1
    blob = redis_client.get(keys.TOKEN_CACHE)
    assert token.encode() not in blob
    # A process holding only the client secret derives another key: it cannot read this cache.
    TokenProvider(settings, redis_client).token()
    assert emulator.directory.tokens_issued == 2


def test_a_refresh_lock_left_by_a_crashed_process_delays_a_token_by_seconds_not_until_it_lapses(
        emulator, settings, redis_client, caplog):
    from workers.graph import auth

    redis_client.set(auth.REFRESH_LOCK, "a process that was SIGKILLed mid-request", ex=auth.REFRESH_LOCK_SECONDS)
    now = [1_000_000.0]
    provider = TokenProvider(settings, redis_client, clock=lambda: now[0],
                             sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert provider.token()
    waited = now[0] - 1_000_000.0
    assert auth.LOCK_WAIT_SECONDS <= waited < auth.LOCK_WAIT_SECONDS + 1 < auth.REFRESH_LOCK_SECONDS
    assert emulator.directory.tokens_issued == 1 and "crashed process" in caplog.text


WEAK_KEYS = ["old key", "correct horse battery staple", "demo-cache-key-9b1e7d3a5c",  # passphrases
             "ab" * 16,  # 16 bytes of hex: too short
             "0" * 64, "ab" * 32,  # hex of the right length, but hardly random
             base64.b64encode(b"x" * 40).decode()]


@pytest.mark.parametrize("weak", WEAK_KEYS)
def test_a_weak_cache_key_is_refused_at_settings_load_without_echoing_it(weak):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"GRAPHHOOK_CACHE_KEY": weak})
    message = str(caught.value)
    assert "GRAPHHOOK_CACHE_KEY is too weak" in message and "openssl rand -hex 32" in message
    assert weak not in message


@pytest.mark.parametrize("weak", WEAK_KEYS[:2])
def test_a_weak_cache_key_is_refused_before_it_encrypts_anything(weak, settings, redis_client):
    with pytest.raises(ConfigError):
        TokenProvider(settings.replace(cache_key=weak), redis_client)


@pytest.mark.parametrize("strong", [
    secrets.token_hex(32),  # openssl rand -hex 32; Heroku's "secret" generator
    base64.b64encode(secrets.token_bytes(32)).decode(),  # openssl rand -base64 32
    base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="),  # Fernet.generate_key() style
])
def test_random_keys_of_32_bytes_are_accepted(strong):
    assert Settings.from_env({"GRAPHHOOK_CACHE_KEY": strong}).cache_key == strong
