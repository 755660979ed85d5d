"""Trigger dispatch: given a complete email record, fire every configured trigger.

This is the single seam between fetching (``workers.jobs``) and acting (rules,
actions, webhooks, handlers). For now it fires the built-in ``record`` trigger.
"""

from __future__ import annotations

import time
from typing import Any

from . import triggers
from .runtime import Context


def dispatch(ctx: Context, record: dict[str, Any], *, subscription_id: str = "", notified_at: float | None = None) -> int:
    """Fire the triggers for one email record; return how many fired."""
    triggers.record(ctx.redis, {
        "trigger": "record", "subscriptionId": subscription_id,
        "email": record, "notifiedAt": notified_at or time.time(),
    }, events_file=ctx.settings.events_file)
    return 1
