"""Creating Graph subscriptions for mailbox folders and keeping the registry the receiver checks.

Each subscription gets its own random clientState (43 URL-safe characters,
under Graph's 128 limit), stored with the subscription id in Redis so the
receiver can verify every notification.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import redis

from receiver import keys
from receiver.settings import Settings

from .graph import GraphClient

log = logging.getLogger("graphhook.subscriptions")

MAX_LIFETIME = dt.timedelta(minutes=10080)  # Outlook messages (graph-protocol.md §1)
SAFETY = dt.timedelta(minutes=5)  # ask a little under the maximum so clocks never push us over


@dataclass(frozen=True)
class Subscription:
    """A subscription as Graph describes it, plus the mailbox it is for."""

    id: str
    resource: str
    expiration: str
    mailbox: str
    folder: str

    @classmethod
    def from_graph(cls, data: dict[str, Any], mailbox: str, folder: str) -> "Subscription":
        return cls(data["id"], data["resource"], data["expirationDateTime"], mailbox, folder)


def resource_for(user_id: str, folder: str | None) -> str:
    """The Graph resource path for a user's folder (or all their messages)."""
    if not folder:
        return f"users/{user_id}/messages"
    return f"users/{user_id}/mailFolders('{folder}')/messages"


def create(graph: GraphClient, r: redis.Redis, settings: Settings, mailbox: str, folder: str = "inbox",
           *, now: dt.datetime | None = None) -> Subscription:
    """Create a subscription for new mail in ``mailbox``/``folder`` and register it."""
    settings.require("PUBLIC_URL")
    user = graph.get(f"users/{mailbox}", params={"$select": "id,mail,userPrincipalName"})
    now = now or dt.datetime.now(dt.timezone.utc)
    client_state = secrets.token_urlsafe(32)
    body = {
        "changeType": "created",
        "notificationUrl": f"{settings.public_url}/notifications",
        "lifecycleNotificationUrl": f"{settings.public_url}/lifecycle",
        "resource": resource_for(user["id"], folder),
        "expirationDateTime": (now + MAX_LIFETIME - SAFETY).strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
        "clientState": client_state,
        "latestSupportedTlsVersion": "v1_2",
    }
    data = graph.post("subscriptions", json=body).json()
    sub = Subscription.from_graph(data, mailbox, folder)
    pipe = r.pipeline()
    pipe.hset(keys.subscription(sub.id), mapping={
        "clientState": client_state, "tenantId": settings.tenant_id, "mailbox": mailbox,
        "userId": user["id"], "folder": folder, "resource": sub.resource, "expiration": sub.expiration,
    })
    pipe.sadd(keys.SUBSCRIPTIONS, sub.id)
    pipe.execute()
    log.info("created subscription %s for %s/%s, expires %s", sub.id, mailbox, folder, sub.expiration)
    return sub
