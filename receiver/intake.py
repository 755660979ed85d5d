"""Checks applied to each notification before anything is enqueued (pure: no I/O).

A notification is accepted only if its subscription is one we created, its
clientState equals that subscription's (compared in constant time) and its
tenant is ours (graph-protocol.md §2).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from graphhook.core.errors import RejectedNotification
from graphhook.core.notifications import Notification


@dataclass(frozen=True)
class KnownSubscription:
    """What the receiver needs to know about a subscription we created."""

    id: str
    client_state: str = field(repr=False)
    tenant_id: str

    @classmethod
    def from_redis(cls, subscription_id: str, values: dict) -> "KnownSubscription | None":
        """Build from the registry hash (bytes or str values); None if absent or incomplete."""
        def text(key: str) -> str:
            value = values.get(key) or values.get(key.encode())
            return value.decode() if isinstance(value, bytes) else (value or "")

        state, tenant = text("clientState"), text("tenantId")
        if not state:
            return None
        return cls(subscription_id, state, tenant)


def check(notification: Notification, known: KnownSubscription | None, *, tenant_id: str) -> None:
    """Raise RejectedNotification (with a metric-friendly reason) unless the notification is ours."""
    if known is None:
        raise RejectedNotification("unknown_subscription", f"unknown subscription {notification.subscription_id[:64]!r}")
    supplied = (notification.client_state or "").encode()
    if not hmac.compare_digest(supplied, known.client_state.encode()):
        raise RejectedNotification("client_state_mismatch", f"clientState does not match subscription {known.id!r}")
    expected = tenant_id or known.tenant_id
    if expected and notification.tenant_id.lower() != expected.lower():
        raise RejectedNotification("tenant_mismatch", f"tenant {notification.tenant_id[:64]!r} is not ours")
