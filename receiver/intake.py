"""Checks applied to each notification before anything is enqueued (pure: no I/O).

A notification is accepted only if its subscription is one we created, its
clientState equals that subscription's (compared in constant time), its
tenant is the one the registry recorded for that subscription (graph-protocol.md §2;
never the notification's own claim, so one tenant's subscription cannot carry another
tenant's notifications) and, for a change, its ``resource`` names the mailbox the
subscription watches: a leaked clientState must not let anyone point graphhook at
another mailbox.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from graphhook.core.errors import MalformedNotification, RejectedNotification
from graphhook.core.notifications import Notification
from graphhook.core.settings import DEFAULT_TENANT

# The registry hash fields the receiver reads (workers/subscriptions/registry.py writes them).
REGISTRY_FIELDS = ("clientState", "tenantId", "userId", "rich", "appId", "tenant")


@dataclass(frozen=True)
class KnownSubscription:
    """What the receiver needs to know about a subscription we created."""

    id: str
    client_state: str = field(repr=False)
    tenant_id: str
    user_id: str = ""  # the watched mailbox's Graph object id; empty: changes are refused (fail closed)
    rich: bool = True  # includeResourceData: its changes need validation tokens
    app_id: str = ""  # the client id that created it: the audience of its validation tokens ("": AZURE_CLIENT_ID)
    tenant: str = DEFAULT_TENANT  # the tenant's name in the configuration: a bounded metrics label

    @classmethod
    def from_redis(cls, subscription_id: str, values: dict) -> "KnownSubscription | None":
        """Build from the registry hash (bytes or str values); None if absent or incomplete.

        A hash without the ``rich`` field is taken as rich, so that validation tokens are
        required whenever the registry cannot say they are not.
        """
        def raw(key: str) -> object:
            value = values.get(key)
            return values.get(key.encode()) if value is None else value

        def text(key: str) -> str:
            value = raw(key)
            return value.decode() if isinstance(value, bytes) else (value or "")

        state, tenant = text("clientState"), text("tenantId")
        if not state:
            return None
        rich = raw("rich") is None or text("rich") == "1"
        return cls(subscription_id, state, tenant, text("userId"), rich, text("appId"), text("tenant") or DEFAULT_TENANT)

    def party(self, *, client_id: str, tenant_id: str) -> tuple[str, str]:
        """(app id, tenant id) its validation tokens must be for; the arguments stand in for older records."""
        return self.app_id or client_id, self.tenant_id or tenant_id


def check(notification: Notification, known: KnownSubscription | None, *, tenant_id: str) -> None:
    """Raise RejectedNotification (with a metric-friendly reason) unless the notification is ours."""
    if known is None:
        raise RejectedNotification("unknown_subscription", f"unknown subscription {notification.subscription_id[:64]!r}")
    supplied = (notification.client_state or "").encode()
    if not hmac.compare_digest(supplied, known.client_state.encode()):
        raise RejectedNotification("client_state_mismatch", f"clientState does not match subscription {known.id!r}")
    # The subscription's own tenant, as the registry recorded it when we created it; never the notification's
    # claim. ``tenant_id`` (AZURE_TENANT_ID) only for records written before the registry kept it.
    expected = known.tenant_id or tenant_id
    if not expected or notification.tenant_id.lower() != expected.lower():
        raise RejectedNotification("tenant_mismatch", f"tenant {notification.tenant_id[:64]!r} is not ours")
    if notification.change_type is not None:
        _check_resource(notification, known)


def _check_resource(notification: Notification, known: KnownSubscription) -> None:
    """The change's message must be in the subscription's mailbox, compared by Graph user id.

    Graph names the mailbox by its object id (``Users/{guid}/Messages/{id}``, in varying case)
    even when the subscription was created with an address; the registry records that id.
    """
    try:
        ref = notification.message_ref()
    except MalformedNotification as exc:
        raise RejectedNotification("resource_mismatch", f"subscription {known.id!r}: {exc}") from exc
    if not ref.is_user(known.user_id):
        raise RejectedNotification("resource_mismatch",
                                   f"resource is not in the mailbox of subscription {known.id!r}")
