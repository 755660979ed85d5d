"""Redis key names shared by the receiver (reads) and the workers (write); one place for all of them."""

from __future__ import annotations

PREFIX = "graphhook"


def subscription(subscription_id: str) -> str:
    """Hash: clientState, tenantId, mailbox, userId, folder, resource, expiration of a live subscription."""
    return f"{PREFIX}:sub:{subscription_id}"


SUBSCRIPTIONS = f"{PREFIX}:subs"  # set of the ids we created and still want
TENANTS = f"{PREFIX}:tenants"  # set of tenant names whose state is kept (tenant_state): shown even without subscriptions
EVENTS = f"{PREFIX}:events"  # list of JSON trigger events (the built-in "record" trigger)
PROCESSED = f"{PREFIX}:processed"  # prefix: SET NX markers that make message processing exactly-once
TOKEN_CACHE = f"{PREFIX}:msal-cache"  # MSAL's serialized token cache (encrypted) of the default tenant


def tenant_prefix(tenant: str) -> str:
    """Where a named tenant's own keys live (``graphhook:t:<name>``); the default tenant keeps the plain names."""
    return f"{PREFIX}:t:{tenant}"


# Hash: ``state`` (ok | consent_missing | throttled | error), ``reason`` (no secrets), ``at`` (ISO time) of one tenant,
# written by the renewer and the lifecycle job (workers/subscriptions/tenant_state.py), read by /metrics and status.
def tenant_state(tenant: str) -> str: return f"{PREFIX}:t:{tenant}:state"


def orphans(tenant: str) -> str:
    """Hash: subscription id → expiration of a removed tenant's subscriptions that could not be deleted (its
    token no longer works); they expire at Graph on their own, and the key with the last of them."""
    return f"{tenant_prefix(tenant)}:orphans"


def token_cache(tenant: str = "default") -> str:
    """MSAL's encrypted token cache of one tenant's app."""
    return TOKEN_CACHE if tenant == "default" else f"{tenant_prefix(tenant)}:msal-cache"


def processed(mailbox_id: str, message_id: str) -> str:
    """Marker that a message of a mailbox has been processed (or is being processed)."""
    return f"{PROCESSED}:{mailbox_id}:{message_id}"

RENEWER_LOCK = f"{PREFIX}:renewer:leader"  # the renewer replica holding this lock acts; others wait


def renewer_alive(hostname: str) -> str:
    """Hash: pid and time of the last loop of the renewer on ``hostname``; expires when it stops looping."""
    return f"{PREFIX}:renewer:alive:{hostname}"


def delta(user_id: str, folder: str) -> str:
    """Hash: deltaLink and lastSync of one mailbox folder's delta query."""
    return f"{PREFIX}:delta:{user_id}:{folder.lower()}"


def resync_lock(user_id: str, folder: str) -> str:
    """Lock so one resync of a folder runs at a time."""
    return f"{PREFIX}:resync-lock:{user_id}:{folder.lower()}"


def resync_followup(user_id: str, folder: str) -> str:
    """Set while a follow-up resync of a folder is scheduled (one at a time)."""
    return f"{PREFIX}:resync-followup:{user_id}:{folder.lower()}"


def replaced_by(subscription_id: str) -> str:
    """String: the id of the subscription that replaced this one (kept a day, for retried lifecycle jobs)."""
    return f"{PREFIX}:sub:{subscription_id}:replaced-by"

MAILBOXES_THROTTLED = "graphhook:mailbox:throttled"
"""Sorted set: mailbox -> end (ms) of the Retry-After Graph gave it; workers/graph/limits.py writes, /metrics counts."""
