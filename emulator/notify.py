"""What Graph POSTs: change notifications (plain and rich) and lifecycle notifications, and when.

Shapes follow graph-protocol.md §2–§4. The reauthorization schedule follows
the illustrative code in Microsoft's lifecycle-events doc: with ``T`` the
time left before the authorization lapses (the subscription's expiry, or an
earlier access-token horizon when ``authorization_lifetime`` is set), the
first ``reauthorizationRequired`` comes once ``T/4`` is 180 minutes or less;
while ``T/4`` is above 60 minutes the next one follows after ``T/8``; below
that, every 15 minutes. If the app neither reauthorizes nor renews within
``reauthorization_grace`` of the first notice, change notifications pause
(and are lost) until it does.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .mailstore import MESSAGE_PROPERTIES
from .richcrypto import encrypt_resource, load_certificate
from .subscriptions import Subscription, format_time

LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
FIRST_NOTICE = dt.timedelta(minutes=180)  # of T/4
FAST_CADENCE_BELOW = dt.timedelta(minutes=60)  # of T/4
FAST_CADENCE = dt.timedelta(minutes=15)
# Rich-notification payloads annotate these with their OData type.
_TYPED = {"receivedDateTime", "sentDateTime", "createdDateTime", "lastModifiedDateTime"}


def selected_fields(resource: str) -> list[str]:
    """The message properties named in the resource's ``$select`` (Graph's spelling)."""
    query = {k.lower(): v for k, v in parse_qsl(urlsplit(resource).query)}
    wanted = {f.strip().lower() for f in query.get("$select", "").split(",") if f.strip()}
    return [p for p in MESSAGE_PROPERTIES if p.lower() in wanted]


def change_notification(sub: Subscription, tenant_id: str, user_id: str, message: dict[str, Any],
                        change: str) -> dict[str, Any]:
    """One ``changeNotification``; rich subscriptions get ``encryptedContent`` with the ``$select``ed data."""
    message_id = message["_immutableId"] if sub.immutable_ids else message["id"]
    resource = f"Users/{user_id}/Messages/{message_id}"
    notification: dict[str, Any] = {
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": format_time(sub.expiration),
        "changeType": change,
        "resource": resource,
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": resource,
            "@odata.etag": f'W/"{message["changeKey"]}"',
            "id": message_id,
        },
        "clientState": sub.client_state,
        "tenantId": tenant_id,
    }
    if sub.include_resource_data and sub.encryption_certificate and change != "deleted":
        data: dict[str, Any] = {
            "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#Users('{user_id}')/Messages/$entity",
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": resource,
            "@odata.etag": f'W/"{message["changeKey"]}"',
            "id": message_id,
        }
        for field in selected_fields(sub.resource):
            if field in _TYPED:
                data[f"{field}@odata.type"] = "#DateTimeOffset"
            data[field] = message[field]
        notification["encryptedContent"] = encrypt_resource(
            data, load_certificate(sub.encryption_certificate), sub.encryption_certificate_id or ""
        )
    return notification


def lifecycle_notification(sub: Subscription, tenant_id: str, event: str) -> dict[str, Any]:
    """One lifecycle notification (no resource; ``lifecycleEvent`` instead of ``changeType``)."""
    if event not in LIFECYCLE_EVENTS:
        raise ValueError(f"unknown lifecycle event {event!r}; expected one of {LIFECYCLE_EVENTS}")
    return {
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": format_time(sub.expiration),
        "tenantId": tenant_id,
        "clientState": sub.client_state,
        "lifecycleEvent": event,
    }


def authorization_horizon(sub: Subscription, lifetime: float | None) -> dt.datetime:
    """When the subscription's authorization lapses: its expiry, or sooner with a token lifetime."""
    if lifetime is None or sub.authorized_at is None:
        return sub.expiration
    return min(sub.expiration, sub.authorized_at + dt.timedelta(seconds=lifetime))


def reauthorization_due(sub: Subscription, now: dt.datetime, lifetime: float | None) -> dt.timedelta | None:
    """If a ``reauthorizationRequired`` is due now, the wait until the following one; else None."""
    quarter = (authorization_horizon(sub, lifetime) - now) / 4
    if quarter <= dt.timedelta(0) or quarter > FIRST_NOTICE:
        return None
    if sub.next_notice is not None and now < sub.next_notice:
        return None
    return quarter / 2 if quarter > FAST_CADENCE_BELOW else FAST_CADENCE
