"""``/_emulator``: the test-control API (not part of Microsoft Graph).

- ``POST /_emulator/users`` ``{"address", "displayName"}`` → 201 user
- ``POST /_emulator/users/<address>/messages`` ``{message spec, "folder"}`` → 201 ``{"id", "notified"}``
- ``POST /_emulator/subscriptions/<id>/lifecycle`` ``{"event"}`` → 202
- ``POST /_emulator/faults`` ``{"category", "status", "rate", "count", "retryAfter", "delay"}``; ``DELETE`` clears
- ``GET /_emulator/log`` → the Graph request log; ``GET /_emulator/state`` → counters
- ``GET /_emulator/events`` → what the emulator did; ``GET /_emulator/outbound`` → mail sent outside the tenant
- ``GET /_emulator/clock``; ``POST /_emulator/clock`` ``{"advance": seconds}`` → runs what fell due
- ``POST /_emulator/throttle`` ``{"enabled", "concurrency", "requests", "window", ...}`` → the limits now
- ``POST /_emulator/delta/evict`` ``{"token"?}`` → evicts one delta token (or all): its link then answers 410
- ``GET|POST /_emulator/tenants`` ``{"tenantId"?}`` → the tenants (users, consents) / 201 a new one;
  ``POST /_emulator/tenants/<tid>/users`` ``{"address", "displayName"}``; ``POST /_emulator/tenants/<tid>/apps``
  ``{"clientId"?, "clientSecret"?, "multiTenant"?, "roles"?}`` registers an app there;
  ``PUT|DELETE /_emulator/tenants/<tid>/consents/<client id>`` ``{"roles"?}`` grants or revokes consent
"""

from __future__ import annotations

import base64

from flask import Blueprint, current_app, jsonify, request

from .faults import FaultRule
from .mailstore import NotFound

bp = Blueprint("admin", __name__, url_prefix="/_emulator")


def _emulator():
    return current_app.config["EMULATOR"]


def _bad(message: str, status: int = 400):
    return jsonify({"error": message}), status


@bp.post("/users")
def add_user():
    body = request.get_json(silent=True) or {}
    if not isinstance(body.get("address"), str) or "@" not in body["address"]:
        return _bad("address (an email address) is required")
    try:
        user = _emulator().add_user(body["address"], body.get("displayName"))
    except ValueError as exc:  # the address is another tenant's
        return _bad(str(exc), 409)
    return jsonify(user.to_graph()), 201


@bp.post("/users/<address>/messages")
def deliver(address: str):
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _bad("a JSON message spec is required")
    folder = body.pop("folder", "inbox")
    for attachment in body.get("attachments", []):
        if "contentBase64" in attachment:
            attachment["content"] = base64.b64decode(attachment.pop("contentBase64"))
    try:
        message = _emulator().deliver(address, body, folder)
    except NotFound as exc:
        return _bad(f"not found: {exc}", 404)
    except (KeyError, ValueError, TypeError) as exc:
        return _bad(f"bad message spec: {exc}")
    return jsonify({"id": message["id"], "internetMessageId": message["internetMessageId"]}), 201


@bp.post("/subscriptions/<subscription_id>/lifecycle")
def lifecycle(subscription_id: str):
    body = request.get_json(silent=True) or {}
    try:
        _emulator().lifecycle(subscription_id, body.get("event", ""))
    except KeyError:
        return _bad(f"unknown subscription {subscription_id!r}", 404)
    except ValueError as exc:
        return _bad(str(exc))
    return jsonify({"sent": body["event"]}), 202


@bp.post("/faults")
def add_fault():
    body = request.get_json(silent=True) or {}
    try:
        status = body.get("status", 503)
        rule = FaultRule(
            category=body.get("category", "graph"), status=None if status is None else int(status),
            rate=float(body.get("rate", 0.0)), count=int(body.get("count", 0)),
            retry_after=body.get("retryAfter", 1.0), delay=float(body.get("delay", 0.0)),
            path=body.get("path"), method=body.get("method"),
        )
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    _emulator().faults.add(rule)
    return jsonify({"ok": True}), 201


@bp.delete("/faults")
def clear_faults():
    _emulator().faults.clear()
    return "", 204


@bp.get("/log")
def request_log():
    return jsonify({"value": list(_emulator().request_log)})


@bp.get("/state")
def state():
    emu = _emulator()
    return jsonify({
        "users": len(emu.mail.users),
        "subscriptions": len(emu.subscriptions.items),
        "tokensIssued": emu.directory.tokens_issued,
        "pendingDeliveries": emu.delivery.pending(),
        "endpoints": {url: {"delivered": s.delivered, "slow": s.slow, "failed": s.failed,
                            "dropped": s.dropped, "state": s.state}
                      for url, s in emu.delivery.stats.items()},
    })


@bp.get("/events")
def events():
    return jsonify({"value": list(_emulator().events)})


@bp.get("/outbound")
def outbound():
    return jsonify({"value": [{k: v for k, v in m.items() if k != "message"} for m in _emulator().outbound_mail]})


@bp.get("/clock")
def clock():
    return jsonify({"now": _emulator().clock.now().isoformat(), "offset": _emulator().clock.offset})


@bp.post("/clock")
def advance():
    body = request.get_json(silent=True) or {}
    try:
        seconds = float(body.get("advance", 0))
        _emulator().advance(seconds)
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    return clock()


@bp.post("/throttle")
def throttle():
    body = request.get_json(silent=True) or {}
    try:
        limits = _emulator().throttle.configure(**body)
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    return jsonify(vars(limits))


@bp.get("/throttle")
def throttle_stats():
    """What the per-mailbox limits refused, requests sent before a Retry-After passed, peak in flight."""
    return jsonify(_emulator().throttle.stats())


@bp.post("/latency")
def latency():
    """``{"ms": N}``: every Graph call takes N ms longer (a ``$batch`` once), as real Graph's 100–300 ms."""
    body = request.get_json(silent=True) or {}
    try:
        ms = float(body.get("ms", 0))
    except (TypeError, ValueError):
        return _bad("ms must be a number of milliseconds")
    if not 0 <= ms <= 60_000:
        return _bad("ms must be between 0 and 60000")
    _emulator().latency = ms / 1000
    return jsonify({"ms": ms})


@bp.post("/delta/evict")
def evict():
    body = request.get_json(silent=True) or {}
    return jsonify({"evicted": _emulator().evict_delta_tokens(body.get("token"))})


# --- several tenants (tenants.py) -------------------------------------------------------------------
@bp.get("/tenants")
def tenants():
    return jsonify({"value": _emulator().tenants.describe()})


@bp.post("/tenants")
def add_tenant():
    body = request.get_json(silent=True) or {}
    return jsonify({"tenantId": _emulator().add_tenant(body.get("tenantId")).tenant_id}), 201


def _tenant(tenant_id: str):
    try:
        return _emulator().tenant(tenant_id), None
    except KeyError:
        return None, _bad(f"unknown tenant {tenant_id!r}", 404)


@bp.post("/tenants/<tenant_id>/users")
def add_tenant_user(tenant_id: str):
    tenant, error = _tenant(tenant_id)
    body = request.get_json(silent=True) or {}
    if error:
        return error
    if not isinstance(body.get("address"), str) or "@" not in body["address"]:
        return _bad("address (an email address) is required")
    try:
        user = tenant.add_user(body["address"], body.get("displayName"))
    except ValueError as exc:
        return _bad(str(exc), 409)
    return jsonify(user.to_graph()), 201


@bp.post("/tenants/<tenant_id>/apps")
def add_app(tenant_id: str):
    tenant, error = _tenant(tenant_id)
    body = request.get_json(silent=True) or {}
    if error:
        return error
    app = tenant.add_app(client_id=body.get("clientId"), client_secret=body.get("clientSecret"),
                         multi_tenant=bool(body.get("multiTenant")), roles=body.get("roles"))
    return jsonify({"clientId": app.client_id, "clientSecret": app.secret, "tenantId": app.home_tenant,
                    "multiTenant": app.multi_tenant, "roles": list(app.roles)}), 201


@bp.put("/tenants/<tenant_id>/consents/<client_id>")
def grant_consent(tenant_id: str, client_id: str):
    body = request.get_json(silent=True) or {}
    try:
        _emulator().consent(client_id, tenant_id, body.get("roles"))
    except KeyError:
        return _bad(f"unknown tenant {tenant_id!r}", 404)
    except ValueError as exc:
        return _bad(str(exc))
    return jsonify({"clientId": client_id, "tenantId": tenant_id}), 200


@bp.delete("/tenants/<tenant_id>/consents/<client_id>")
def revoke_consent(tenant_id: str, client_id: str):
    try:
        challenged = _emulator().revoke_consent(client_id, tenant_id)
    except KeyError:
        return _bad(f"unknown tenant {tenant_id!r}", 404)
    return jsonify({"clientId": client_id, "tenantId": tenant_id, "challenged": challenged}), 200
