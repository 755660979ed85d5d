"""Graph subscription operations for mailbox folders: create, renew, reauthorize, delete.

Every subscription gets its own random clientState (43 URL-safe characters,
within Graph's 128 limit) and always a ``lifecycleNotificationUrl`` (it cannot
be added later by PATCH; graph-protocol.md §1). The registry in Redis
(:mod:`workers.subscriptions.registry`) is updated with each operation.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Callable

import redis

from graphhook.core import keys
from graphhook.core.errors import NotFoundError
from graphhook.core.settings import Settings
from workers.graph.client import GraphClient
from workers.subscriptions import registry
from workers.subscriptions.registry import Record, format_time

log = logging.getLogger("graphhook.subscriptions")

MAX_LIFETIME = dt.timedelta(minutes=10080)  # Outlook messages (graph-protocol.md §1)
MAX_LIFETIME_RICH = dt.timedelta(minutes=1440)  # with resource data
SAFETY = dt.timedelta(minutes=5)  # ask a little under the maximum so clock skew never pushes us over


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def resource_for(user_id: str, folder: str | None) -> str:
    """The Graph resource path for a user's folder (or all their messages)."""
    if not folder:
        return f"users/{user_id}/messages"
    return f"users/{user_id}/mailFolders('{folder}')/messages"


def expiry(now: dt.datetime, lifetime: dt.timedelta = MAX_LIFETIME) -> str:
    """The expirationDateTime to ask for: the documented maximum, less a safety margin."""
    return (now + lifetime - SAFETY).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


# What a rich notification carries (the receiver decrypts it): enough to triage without a fetch.
# Outlook forbids Body/UniqueBody in a rich $select (graph-protocol.md §1).
RICH_SELECT = "subject,from,sender,toRecipients,receivedDateTime,internetMessageId,hasAttachments,importance,isRead"


def lifetime_of(record: Record) -> dt.timedelta:
    """The documented maximum for this subscription: 1,440 minutes with resource data, else 10,080."""
    return MAX_LIFETIME_RICH if record.rich else MAX_LIFETIME


def encryption_certificate(settings: Settings) -> tuple[str, str]:
    """(base64 DER certificate, encryptionCertificateId) for rich subscriptions, from the first
    entry of GRAPHHOOK_ENCRYPTION_KEYS (a PEM with key and certificate, or PKCS#12)."""
    import base64
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    from graphhook.core.errors import ConfigError
    from graphhook.core.richnotify import KeyRing

    ring = KeyRing.from_spec(settings.encryption_keys, password=settings.encryption_key_password or None)
    if not len(ring):
        raise ConfigError("GRAPHHOOK_RICH_NOTIFICATIONS needs GRAPHHOOK_ENCRYPTION_KEYS (key and certificate)")
    first = settings.encryption_keys.replace("\n", ",").split(",")[0].strip()
    path = first.rpartition("=")[2] if "=" in first else first
    data = Path(path).read_bytes()
    if b"BEGIN CERTIFICATE" in data:
        cert = x509.load_pem_x509_certificate(data[data.index(b"-----BEGIN CERTIFICATE"):])
    else:
        _, cert, _ = pkcs12.load_key_and_certificates(data, settings.encryption_key_password.encode() or None)
    if cert is None:
        raise ConfigError(f"{path!r} holds no certificate; rich subscriptions must send Graph the public certificate")
    der = cert.public_bytes(serialization.Encoding.DER)
    return base64.b64encode(der).decode(), ring.keys[0].certificate_id


def user_id_of(graph: GraphClient, mailbox: str) -> str:
    """The user's GUID: Graph advises GUIDs over UPNs in resources (graph-protocol.md §1)."""
    return graph.get(f"users/{mailbox}", params={"$select": "id"})["id"]


def create(graph: GraphClient, r: redis.Redis, settings: Settings, mailbox: str, folder: str = "inbox",
           *, now: dt.datetime | None = None, user_id: str | None = None) -> Record:
    """Create a subscription for new mail in ``mailbox``/``folder`` and register it."""
    settings.require("PUBLIC_URL")
    now = now or utcnow()
    user_id = user_id or user_id_of(graph, mailbox)
    client_state = secrets.token_urlsafe(32)
    rich = settings.rich_notifications
    body = {
        "changeType": "created",
        "notificationUrl": f"{settings.public_url}/notifications",
        "lifecycleNotificationUrl": f"{settings.public_url}/lifecycle",
        "resource": resource_for(user_id, folder),
        "expirationDateTime": expiry(now, MAX_LIFETIME_RICH if rich else MAX_LIFETIME),
        "clientState": client_state,
        "latestSupportedTlsVersion": "v1_2",
    }
    if rich:
        certificate, certificate_id = encryption_certificate(settings)
        body.update({"resource": f"{body['resource']}?$select={RICH_SELECT}", "includeResourceData": True,
                     "encryptionCertificate": certificate, "encryptionCertificateId": certificate_id})
    data = graph.post("subscriptions", json=body).json()
    record = Record(
        id=data["id"], mailbox=mailbox, user_id=user_id, folder=folder, resource=data["resource"],
        expiration=data["expirationDateTime"], client_state=client_state, tenant_id=settings.tenant_id,
        created_at=format_time(now), renewed_at="", state="active", rich=rich, tenant=settings.tenant,
        app_id=settings.client_id,
    )
    registry.save(r, record)
    log.info("created subscription %s for %s/%s, expires %s", record.id, mailbox, folder, record.expiration)
    return record


def renew(graph: GraphClient, r: redis.Redis, record: Record, *, now: dt.datetime | None = None) -> Record:
    """PATCH a new expiry (which also reauthorizes); raises NotFoundError if Graph no longer has it."""
    now = now or utcnow()
    data = graph.patch(f"subscriptions/{record.id}", json={"expirationDateTime": expiry(now, lifetime_of(record))}).json()
    renewed = record.updated(expiration=data["expirationDateTime"], renewed_at=format_time(now),
                             state="active", last_error="")
    registry.save(r, renewed)
    return renewed


def reauthorize(graph: GraphClient, r: redis.Redis, subscription_id: str, *, now: dt.datetime | None = None) -> None:
    """``POST /subscriptions/{id}/reauthorize`` (204); raises NotFoundError when it is gone."""
    graph.post(f"subscriptions/{subscription_id}/reauthorize")
    registry.update(r, subscription_id, renewed_at=format_time(now or utcnow()), state="active", last_error="")


def delete(graph: GraphClient, r: redis.Redis, subscription_id: str) -> None:
    """Delete at Graph (a 404 is fine: it is gone either way) and forget it."""
    try:
        graph.delete(f"subscriptions/{subscription_id}")
    except NotFoundError:
        pass
    registry.remove(r, subscription_id)
    log.info("deleted subscription %s", subscription_id)


def renew_many(graph: GraphClient, r: redis.Redis, records: list[Record], *, now: dt.datetime | None = None,
               before_each: Callable[[], object] | None = None,
               ) -> tuple[list[Record], list[Record], list[tuple[Record, str]]]:
    """Renew many subscriptions through ``$batch`` (20 PATCHes per round trip).

    Returns (renewed, missing at Graph, failed with reason). ``before_each`` runs once per
    PATCH before it is sent (the write limiter).
    """
    from workers.graph.client import error_for

    now = now or utcnow()
    renewed: list[Record] = []
    missing: list[Record] = []
    failed: list[tuple[Record, str]] = []
    for start in range(0, len(records), 20):
        chunk = records[start:start + 20]
        for _ in chunk:
            if before_each:
                before_each()
        answers = graph.batch([{"method": "PATCH", "url": f"subscriptions/{rec.id}",
                                "body": {"expirationDateTime": expiry(now, lifetime_of(rec))}} for rec in chunk])
        pipe = r.pipeline(transaction=False)
        for record, answer in zip(chunk, answers):
            status = answer.get("status") or 0
            if status == 200 and isinstance(answer.get("body"), dict):
                new = record.updated(expiration=answer["body"]["expirationDateTime"], renewed_at=format_time(now),
                                     state="active", last_error="")
                pipe.hset(keys.subscription(record.id), mapping=new.to_redis())
                renewed.append(new)
            elif status == 404:
                missing.append(record)
            else:
                reason = str(error_for(status, answer.get("body"), method="PATCH", url=f"subscriptions/{record.id}"))
                pipe.hset(keys.subscription(record.id), mapping={"state": "renew_failed", "lastError": reason[:300]})
                failed.append((record, reason))
        pipe.execute()
    return renewed, missing, failed
