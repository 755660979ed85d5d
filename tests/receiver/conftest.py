"""Receiver test helpers: settings that find the emulator's validation-token keys, a rich-notification
key pair, and builders for registered subscriptions and notifications."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from graphhook.core import keys
from graphhook.core.settings import Settings

STATE = "s" * 40


@pytest.fixture
def settings(emulator, redis_server):
    """Like the shared fixture, plus the emulator's OpenID configuration for validation-token keys."""
    return Settings.from_env({**emulator.environment(), "REDIS_URL": redis_server.url,
                              "PUBLIC_URL": "https://127.0.0.1",
                              "GRAPHHOOK_OPENID_CONFIG_URL": f"{emulator.url}/common/.well-known/openid-configuration"})


def make_key_pair(directory: Path, name: str = "rich") -> tuple[Path, x509.Certificate]:
    """A self-signed RSA-2048 certificate and key in one PEM file, as a subscriber would make for Graph."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2)).sign(key, hashes.SHA256()))
    path = directory / f"{name}.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
                     + cert.public_bytes(serialization.Encoding.PEM))
    return path, cert


def register(redis_client, tenant: str, sid: str = "sub-1", state: str = STATE, *, user_id: str = "u1",
             rich: bool = False) -> None:
    """Put a subscription in the registry the way the renewer does (``change()`` names user ``u1``)."""
    redis_client.hset(keys.subscription(sid), mapping={"clientState": state, "tenantId": tenant,
                                                       "mailbox": "a@contoso.com", "userId": user_id,
                                                       "rich": "1" if rich else ""})


def change(tenant: str, sid: str = "sub-1", state: str | None = STATE, message: str = "m1", **extra) -> dict:
    """A created-message notification as Graph sends it."""
    item = {"subscriptionId": sid, "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
            "changeType": "created", "resource": f"Users/u1/Messages/{message}", "clientState": state,
            "tenantId": tenant, "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": message}}
    item.update(extra)
    return item


def lifecycle(tenant: str, event: str, sid: str = "sub-1", state: str = STATE) -> dict:
    """A lifecycle notification as Graph sends it."""
    return {"subscriptionId": sid, "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
            "tenantId": tenant, "clientState": state, "lifecycleEvent": event}


def _graph_token(emulator) -> str:
    reply = requests.post(f"{emulator.url}/{emulator.tenant_id}/oauth2/v2.0/token", verify=str(emulator.ca_path), data={
        "grant_type": "client_credentials", "client_id": emulator.client_id, "client_secret": emulator.client_secret,
        "scope": "https://graph.microsoft.com/.default"})
    return reply.json()["access_token"]


@pytest.fixture
def rich_subscription(receiver, emulator, redis_client, tmp_path):
    """A rich subscription created through the emulator's Graph API (both handshakes included), registered.

    ``.id`` is its id, ``.keys`` the GRAPHHOOK_ENCRYPTION_KEYS value that decrypts its notifications."""
    key_path, cert = make_key_pair(tmp_path)
    user = emulator.add_user("alice@contoso.com")
    # Over 12 h: with 12 h or less left, Graph (and the emulator) send reauthorizationRequired at once, and that
    # lifecycle job raced the change notification's job to the front of the queue.
    expiry = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    reply = requests.post(f"{emulator.graph_url}/subscriptions", verify=str(emulator.ca_path),
                          headers={"Authorization": f"Bearer {_graph_token(emulator)}"}, json={
        "changeType": "created", "notificationUrl": f"{receiver.url}/notifications",
        "lifecycleNotificationUrl": f"{receiver.url}/lifecycle",
        "resource": f"users/{user.id}/mailFolders('inbox')/messages?$select=subject,from",
        "expirationDateTime": expiry, "clientState": STATE, "includeResourceData": True,
        "encryptionCertificate": base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode(),
        "encryptionCertificateId": "graphhook-2025"})
    assert reply.status_code == 201, reply.text
    register(redis_client, emulator.tenant_id, sid=reply.json()["id"], user_id=user.id, rich=True)
    return SimpleNamespace(id=reply.json()["id"], keys=f"graphhook-2025={key_path}")
