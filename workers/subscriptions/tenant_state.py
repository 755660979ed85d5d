"""How each tenant is doing: ``ok``, ``consent_missing``, ``throttled`` or ``error``, kept in Redis.

The renewer writes it after each tenant's pass, the lifecycle job when a reauthorization is refused; the
status page and ``/metrics`` read it (``graphhook.core.keys.tenant_state``: a hash with ``state``,
``reason``, ``at`` and ``retryAt``; the tenant's name is in the set ``keys.TENANTS`` while it is kept). A reason says what Microsoft answered and what to do, never a secret.
"""

from __future__ import annotations

import datetime as dt
import logging

import redis

from graphhook.core import keys
from graphhook.core.errors import AccessDeniedError, AuthError, ThrottledError
from workers.subscriptions.registry import format_time

log = logging.getLogger("graphhook.tenants")

OK, CONSENT_MISSING, THROTTLED, ERROR = "ok", "consent_missing", "throttled", "error"
STATES = (OK, CONSENT_MISSING, THROTTLED, ERROR)
# AADSTS codes meaning "this app cannot act in this tenant until someone fixes its registration or consent"
# (https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
CONSENT_CODES = {
    700016: "the app is not consented in this tenant (AADSTS700016): an admin must grant consent",
    7000215: "the app's client secret was refused in this tenant (AADSTS7000215): set the secret's value",
    7000222: "the app's client secret has expired (AADSTS7000222): create a new secret",
}


def classify(exc: BaseException, *, client_id: str, tenant_id: str) -> tuple[str, str]:
    """(state, reason) for an error that stopped a tenant's work."""
    if isinstance(exc, AuthError):
        for code in exc.error_codes:
            if code in CONSENT_CODES:
                return CONSENT_MISSING, f"app {client_id} in tenant {tenant_id}: {CONSENT_CODES[code]}"
        codes = ", ".join(f"AADSTS{c}" for c in exc.error_codes) or exc.code
        return ERROR, f"app {client_id} in tenant {tenant_id}: no token ({codes})"
    if isinstance(exc, AccessDeniedError):
        return CONSENT_MISSING, (f"app {client_id} in tenant {tenant_id}: Graph refused its token ({exc.status} "
                                 f"{exc.code}); consent may have been revoked or a permission removed")
    if isinstance(exc, ThrottledError):
        return THROTTLED, f"Graph kept answering {exc.status} {exc.code} beyond the retry budget"
    return ERROR, f"{type(exc).__name__}: {str(exc)[:200]}"


def is_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` says the tenant refuses this app (its token or consent), not a passing failure."""
    return isinstance(exc, (AuthError, AccessDeniedError)) and classify(exc, client_id="", tenant_id="")[0] == CONSENT_MISSING


def mark(r: redis.Redis, tenant: str, state: str, reason: str = "", *, now: dt.datetime | None = None,
         retry_at: dt.datetime | None = None) -> None:
    """Record ``tenant``'s state; a change is logged (a warning unless it is back to ok)."""
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}, got {state!r}")
    now = now or dt.datetime.now(dt.timezone.utc)
    key = keys.tenant_state(tenant)
    before = r.hget(key, "state")
    fields = {"state": state, "reason": reason, "at": format_time(now),
              "retryAt": format_time(retry_at) if retry_at else ""}
    with r.pipeline() as pipe:
        pipe.hset(key, mapping=fields)
        pipe.sadd(keys.TENANTS, tenant)  # /metrics and the status page list it, even without subscriptions
        pipe.execute()
    if (before or b"").decode() != state:
        (log.info if state == OK else log.warning)("tenant %s is %s%s", tenant, state, f": {reason}" if reason else "",
                                                    extra={"tenant": tenant})


def read(r: redis.Redis, tenant: str) -> dict[str, str]:
    """The recorded state of ``tenant`` (empty when never recorded)."""
    return {k.decode(): v.decode() for k, v in r.hgetall(keys.tenant_state(tenant)).items()}


def forget(r: redis.Redis, tenant: str) -> None:
    """Drop the state of a tenant no longer configured."""
    with r.pipeline() as pipe:
        pipe.delete(keys.tenant_state(tenant))
        pipe.srem(keys.TENANTS, tenant)
        pipe.execute()
