"""How a subscription is doing, from its registry hash alone (pure: shared by the status page, ``/metrics`` and the renewer).

The renewer renews a subscription once less than the renew margin
(``GRAPHHOOK_RENEW_MARGIN_MINUTES``, 24 h) is left. So a subscription with less
than *half* the margin left has missed many renewer passes: that is an alarm
(red on the status page, ``health="at_risk"`` in the metrics, an error in the
renewer's log) well before Graph drops it.

=============  =======  =====================================================
health         colour   meaning
=============  =======  =====================================================
``ok``         green    more than the renew margin left
``renewing``   amber    inside the margin: the renewer should renew it now
``at_risk``    red      under half the margin left and still not renewed
``renew_failed`` red    the last renewal failed (``lastError`` says why)
``removed``    red      Graph removed it; the renewer will recreate it
``expired``    red      past its expiration: notifications have stopped
=============  =======  =====================================================
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Mapping

from graphhook.core.settings import DEFAULT_TENANT

RED = frozenset({"at_risk", "renew_failed", "removed", "expired"})
HEALTHS = ("ok", "renewing", "at_risk", "renew_failed", "removed", "expired")


def parse_time(value: str) -> dt.datetime | None:
    """Graph's timestamps (``Z`` or offset, up to 7 fractional digits) as aware UTC; None if unparseable."""
    if not value:
        return None
    text = re.sub(r"(\.\d{1,6})\d*", r"\1", value.strip()).replace("Z", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


@dataclass(frozen=True)
class SubscriptionView:
    """What may be shown of one registered subscription (never its clientState)."""

    id: str
    mailbox: str
    user_id: str
    folder: str
    expiration: str
    renewed_at: str
    state: str
    last_error: str
    tenant: str = DEFAULT_TENANT  # the tenant's name in the configuration (older records: the default tenant)

    @classmethod
    def from_redis(cls, values: Mapping[bytes, bytes]) -> "SubscriptionView | None":
        """From a ``graphhook:sub:{id}`` hash; None for a hash without an id."""
        d = {k.decode(): v.decode(errors="replace") for k, v in values.items()}
        if not d.get("id"):
            return None
        return cls(id=d["id"], mailbox=d.get("mailbox", ""), user_id=d.get("userId", ""), folder=d.get("folder", ""),
                   expiration=d.get("expiration", ""), renewed_at=d.get("renewedAt", ""),
                   state=d.get("state", "active"), last_error=d.get("lastError", ""),
                   tenant=d.get("tenant") or DEFAULT_TENANT)

    def seconds_left(self, now: dt.datetime) -> float:
        """Seconds until expiration (negative once expired; -inf when unknown)."""
        expires = parse_time(self.expiration)
        return (expires - now).total_seconds() if expires else float("-inf")

    def health(self, now: dt.datetime, margin: dt.timedelta) -> str:
        """One of :data:`HEALTHS` (see the module docstring)."""
        left = self.seconds_left(now)
        if left <= 0:
            return "expired"
        if self.state in ("renew_failed", "removed"):
            return self.state
        if left < margin.total_seconds() / 2:
            return "at_risk"
        if left <= margin.total_seconds():
            return "renewing"
        return "ok"


def countdown(seconds: float) -> str:
    """``2d 03h 04m`` / ``3h 04m 05s`` / ``5m 07s`` / ``expired 3h 02m 00s ago``."""
    if seconds == float("-inf"):
        return "unknown"
    past = seconds < 0
    s = int(abs(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    text = (f"{days}d {hours:02d}h {minutes:02d}m" if days else f"{hours}h {minutes:02d}m {s:02d}s" if hours
            else f"{minutes}m {s:02d}s")
    return f"expired {text} ago" if past else text
