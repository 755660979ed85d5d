"""``/v1.0/subscriptions``: create (with the validation handshake), list, get, renew, reauthorize, delete.

Rules from graph-protocol.md §1: expiry under 45 minutes is raised to 45; beyond the maximum (10,080
minutes for messages, 1,440 with resource data) the emulator either rejects (``expiry_mode="reject"``) or clamps
(``"clamp"``); clientState at most 128 characters; HTTPS URLs only; 1,000 writes per 20 s per app and tenant,
2,000 per tenant. A subscription belongs to its creator's app and tenant (``tenantId`` in its notifications).
"""

from __future__ import annotations

import collections
import datetime as dt
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from flask import Blueprint, current_app, g, jsonify, request

from .graphapi import find_user, graph_error, prefers_immutable, require_roles
from .query import QueryError, parse_filter, parse_time

__all__ = ["parse_time", "format_time", "Subscription", "SubscriptionStore", "bp"]

MIN_LIFETIME = dt.timedelta(minutes=45)
MAX_LIFETIME_MESSAGES = dt.timedelta(minutes=10080)
MAX_LIFETIME_RICH = dt.timedelta(minutes=1440)
MAX_CLIENT_STATE = 128
VALIDATION_TIMEOUT = 10.0  # seconds; not configurable at Microsoft (graph-protocol.md §1)
WRITE_LIMIT, WRITE_WINDOW, TENANT_WRITE_LIMIT = 1000, 20.0, 2000  # per app per tenant, per tenant (throttling-subscription-services)
MAILBOX_LIMIT = 1000  # active Outlook subscriptions per mailbox, all apps together
CHANGE_TYPES = {"created", "updated", "deleted"}

# users/{id}/messages, users/{id}/mailFolders('Inbox')/messages, users/{id}/mailFolders/{id}/messages, me/...
RESOURCE_RE = re.compile(
    r"^/?(?:users/(?P<user>[^/]+)|me)"
    r"(?:/mailFolders(?:\('(?P<folder_q>[^']+)'\)|/(?P<folder>[^/?]+)))?"
    r"/messages(?:\?(?P<query>.*))?$",
    re.IGNORECASE,
)


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


@dataclass
class Subscription:
    id: str
    resource: str
    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_url: str | None
    expiration: dt.datetime
    client_state: str | None
    application_id: str
    user_id: str
    folder_ref: str | None
    include_resource_data: bool = False
    encryption_certificate: str | None = None
    encryption_certificate_id: str | None = None
    tls_version: str = "v1_2"
    reauthorization_required: bool = False
    immutable_ids: bool = False
    authorized_at: dt.datetime | None = None  # created, renewed or reauthorized
    pause_at: dt.datetime | None = None  # delivery pauses from here unless the app reauthorizes
    next_notice: dt.datetime | None = None  # next scheduled reauthorizationRequired
    lost: int = 0  # change notifications not sent while paused
    tenant_id: str = ""  # the tenant of the token that created it

    def paused(self, now: dt.datetime) -> bool:
        """Delivery paused: reauthorization was required and the app let the grace period pass."""
        return self.reauthorization_required and self.pause_at is not None and now >= self.pause_at

    def reauthorized(self, now: dt.datetime) -> None:
        """Reauthorize or renew: clears the challenge and resumes delivery (graph-protocol.md §3)."""
        self.reauthorization_required = False
        self.authorized_at, self.pause_at, self.next_notice = now, None, None

    def matches(self, message: dict[str, Any]) -> bool:
        """Whether ``message`` passes the ``$filter`` in the subscription's resource."""
        query = dict(parse_qsl(urlsplit(self.resource).query))
        flt = next((v for k, v in query.items() if k.lower() == "$filter"), None)
        return parse_filter(flt)(message) if flt else True

    def to_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": ",".join(self.change_types),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": format_time(self.expiration),
            "creatorId": self.application_id,
            "includeResourceData": self.include_resource_data,
            "latestSupportedTlsVersion": self.tls_version,
            "encryptionCertificate": self.encryption_certificate,
            "encryptionCertificateId": self.encryption_certificate_id,
            "notificationUrlAppId": None,
            "notificationContentType": "application/json",  # the default (resources/subscription.md)
        }


class SubscriptionStore:
    """Active subscriptions and the write-rate window per app."""

    def __init__(self, monotonic: Any = time.monotonic, tenant_id: str = "") -> None:
        self.monotonic, self.tenant_id = monotonic, tenant_id
        self.lock = threading.RLock()
        self.items: dict[str, Subscription] = {}
        self._writes: dict[tuple[str, str], collections.deque[float]] = collections.defaultdict(collections.deque)

    def take_write(self, app_id: str, now: float | None = None, *, tenant: str | None = None) -> float | None:
        """Count a write of ``app_id`` in ``tenant`` (default: the first); seconds to wait if the app or tenant is over."""
        now, tenant = self.monotonic() if now is None else now, tenant or self.tenant_id
        with self.lock:
            windows = ((self._writes[(app_id, tenant)], WRITE_LIMIT), (self._writes[("*", tenant)], TENANT_WRITE_LIMIT))
            for window, limit in windows:
                while window and window[0] <= now - WRITE_WINDOW:
                    window.popleft()
                if len(window) >= limit:
                    return max(0.1, window[0] + WRITE_WINDOW - now)
            windows[0][0].append(now), windows[1][0].append(now)
            return None

    def watching(self, user_id: str, folder_id: str, hidden: bool, now: dt.datetime) -> list[Subscription]:
        """Live subscriptions on this folder, or on all the user's mail (which excludes hidden folders)."""
        with self.lock:
            return [
                s for s in self.items.values()
                if s.user_id == user_id and s.expiration > now
                and (s.folder_ref == folder_id or (s.folder_ref is None and not hidden))
            ]


def _with_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + [("validationToken", token)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def validate_endpoint(session: requests.Session, url: str, verify: Any) -> str | None:
    """Run Graph's validation handshake against ``url``; return the error message or None."""
    token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
    try:
        response = session.post(
            _with_token(url, token), data=b"", timeout=VALIDATION_TIMEOUT, verify=verify,
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
    except requests.Timeout:
        return "Subscription validation request timed out."
    except requests.RequestException:
        return "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."
    if response.status_code != 200:
        return "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."
    if not response.headers.get("Content-Type", "").lower().startswith("text/plain"):
        return "Subscription validation request failed. Response must be text/plain."
    if response.text != token:
        return "Subscription validation request failed. Response must exactly match validationToken query parameter."
    return None


bp = Blueprint("subscriptions", __name__, url_prefix="/v1.0/subscriptions")


def _emulator():
    return current_app.config["EMULATOR"]


def _expiry(value: Any, rich: bool) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError("expirationDateTime is required.")
    try:
        wanted = parse_time(value)
    except ValueError as exc:
        raise ValueError(f"Invalid expirationDateTime '{value}'.") from exc
    now = _emulator().clock.now()
    if wanted < now + MIN_LIFETIME:
        return now + MIN_LIFETIME
    limit = MAX_LIFETIME_RICH if rich else MAX_LIFETIME_MESSAGES
    if wanted > now + limit + dt.timedelta(seconds=5):
        if _emulator().expiry_mode == "clamp":
            return now + limit
        minutes = int(limit.total_seconds() // 60)
        raise ValueError(f"Subscription expiration can only be {minutes} minutes in the future.")
    return wanted


def _throttle_writes():
    wait = _emulator().subscriptions.take_write(g.app_id, tenant=g.tenant_id)
    if wait is not None:
        response, status = graph_error(429, "TooManyRequests", "Please retry again later.")
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response, status
    return None


@bp.post("")
@require_roles("Mail.Read", "Mail.ReadWrite", "Mail.ReadBasic", "Mail.ReadBasic.All")
def create():
    emulator = _emulator()
    emulator.faults.maybe_fail("subscriptions", request.method, request.path)
    throttled = _throttle_writes()
    if throttled:
        return throttled
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return graph_error(400, "BadRequest", "Unable to read JSON request payload.")
    change_types = tuple(c.strip() for c in str(body.get("changeType", "")).split(",") if c.strip())
    if not change_types or not set(change_types) <= CHANGE_TYPES:
        return graph_error(400, "ExtensionError", f"Invalid changeType '{body.get('changeType')}'.")
    resource = str(body.get("resource", ""))
    match = RESOURCE_RE.match(resource)
    if not match or not match.group("user"):
        return graph_error(400, "ExtensionError", f"Resource '{resource}' is not supported.")
    try:
        user = find_user(match.group("user"))
    except KeyError:
        return graph_error(404, "ResourceNotFound", f"Resource '{resource}' does not exist or one of its queried reference-property objects are not present.")
    folder_ref = match.group("folder_q") or match.group("folder")
    if folder_ref:
        try:
            folder_ref = user.folder(folder_ref).id
        except KeyError:
            return graph_error(404, "ResourceNotFound", f"Folder '{folder_ref}' was not found.")
    client_state = body.get("clientState")
    if client_state is not None and (not isinstance(client_state, str) or len(client_state) > MAX_CLIENT_STATE):
        return graph_error(400, "ExtensionError", f"clientState can be at most {MAX_CLIENT_STATE} characters.")
    rich = bool(body.get("includeResourceData"))
    query = {k.lower(): v for k, v in parse_qsl(match.group("query") or "", keep_blank_values=True)}
    if "$filter" in query:
        try:
            parse_filter(query["$filter"])
        except QueryError as exc:
            return graph_error(400, "ExtensionError", f"Invalid $filter in resource: {exc.message}")
    if rich:
        if "$select" not in query:
            return graph_error(400, "ExtensionError", "Rich notifications for Outlook resources require $select in the resource.")
        banned = [k for k in ("$top", "$skip", "$orderby") if k in query]
        if banned or {f.strip().lower() for f in query["$select"].split(",")} & {"body", "uniquebody"}:
            return graph_error(400, "ExtensionError", "Rich notifications for Outlook resources cannot use $top, $skip, $orderby or $select of Body or UniqueBody.")
        if not body.get("encryptionCertificate") or not body.get("encryptionCertificateId"):
            return graph_error(400, "ExtensionError", "encryptionCertificate and encryptionCertificateId are required when includeResourceData is true.")
        if len(str(body["encryptionCertificateId"])) > 128:
            return graph_error(400, "ExtensionError", "encryptionCertificateId can be at most 128 characters.")
        try:
            emulator.load_encryption_certificate(body["encryptionCertificate"])
        except ValueError as exc:
            return graph_error(400, "ExtensionError", str(exc))
    try:
        expiration = _expiry(body.get("expirationDateTime"), rich)
    except ValueError as exc:
        return graph_error(400, "ExtensionError", str(exc))
    urls = {"notificationUrl": body.get("notificationUrl"), "lifecycleNotificationUrl": body.get("lifecycleNotificationUrl")}
    if not isinstance(urls["notificationUrl"], str):
        return graph_error(400, "ExtensionError", "notificationUrl is required.")
    for name, url in urls.items():
        if url is None:
            continue
        if not isinstance(url, str) or not url.lower().startswith("https://"):
            return graph_error(400, "ValidationError", f"The {name} must be an https URL.")
    # Validate both URLs, even if they are the same (graph-protocol.md §1).
    for url in urls.values():
        if url is None:
            continue
        problem = validate_endpoint(emulator.outbound, url, emulator.outbound_verify)
        if problem:
            code = "InvalidRequest" if "timed out" in problem else "ValidationError"
            return graph_error(400, code, problem)
    with emulator.subscriptions.lock:
        active = sum(1 for s in emulator.subscriptions.items.values() if s.user_id == user.id)
    if active >= MAILBOX_LIMIT:
        # Observed quota error shape (graph-protocol.md §1); the mail limit is 1,000 per mailbox.
        return graph_error(403, "ExtensionError", "Operation: Create; Exception: [Status Code: Forbidden; Reason: Maximum number of subscriptions has been reached]")
    now = emulator.clock.now()
    sub = Subscription(
        id=str(uuid.uuid4()), resource=resource, change_types=change_types,
        notification_url=urls["notificationUrl"], lifecycle_url=urls["lifecycleNotificationUrl"],
        expiration=expiration, client_state=client_state, application_id=g.app_id,
        user_id=user.id, folder_ref=folder_ref, include_resource_data=rich,
        encryption_certificate=body.get("encryptionCertificate"),
        encryption_certificate_id=body.get("encryptionCertificateId"),
        tls_version=body.get("latestSupportedTlsVersion") or "v1_2",
        immutable_ids=prefers_immutable(), authorized_at=now, tenant_id=g.tenant_id,
    )
    with emulator.subscriptions.lock:
        emulator.subscriptions.items[sub.id] = sub
    emulator.record("subscription.created", id=sub.id, resource=resource)
    return jsonify({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity", **sub.to_graph()}), 201


def _own(subscription_id: str) -> Subscription | None:
    sub = _emulator().subscriptions.items.get(subscription_id)
    if sub is None or sub.application_id != g.app_id or (sub.tenant_id or _emulator().tenant_id) != g.tenant_id:
        return None
    return sub


def _not_found(subscription_id: str):
    return graph_error(404, "ResourceNotFound", f"The object was not found. Subscription '{subscription_id}'.")


@bp.get("")
@require_roles()
def list_subscriptions():
    emulator = _emulator()
    emulator.faults.maybe_fail("subscriptions", request.method, request.path)
    with emulator.subscriptions.lock:
        mine = [s.to_graph() for s in emulator.subscriptions.items.values()
                if (s.application_id, s.tenant_id or emulator.tenant_id) == (g.app_id, g.tenant_id)]
    return jsonify({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions", "value": mine})


@bp.get("/<subscription_id>")
@require_roles()
def get_subscription(subscription_id: str):
    sub = _own(subscription_id)
    return jsonify(sub.to_graph()) if sub else _not_found(subscription_id)


@bp.patch("/<subscription_id>")
@require_roles()
def renew(subscription_id: str):
    emulator = _emulator()
    emulator.faults.maybe_fail("subscriptions", request.method, request.path)
    throttled = _throttle_writes()
    if throttled:
        return throttled
    sub = _own(subscription_id)
    if sub is None:
        return _not_found(subscription_id)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return graph_error(400, "BadRequest", "Unable to read JSON request payload.")
    if "lifecycleNotificationUrl" in body:
        return graph_error(400, "ExtensionError", "lifecycleNotificationUrl cannot be changed; delete and recreate the subscription.")
    try:
        expiration = _expiry(body["expirationDateTime"], sub.include_resource_data) if "expirationDateTime" in body else sub.expiration
    except ValueError as exc:
        return graph_error(400, "ExtensionError", str(exc))
    new_url = body.get("notificationUrl")
    if new_url is not None:
        if not isinstance(new_url, str) or not new_url.lower().startswith("https://"):
            return graph_error(400, "ValidationError", "The notificationUrl must be an https URL.")
    if emulator.revalidate_on_patch or new_url:
        problem = validate_endpoint(emulator.outbound, new_url or sub.notification_url, emulator.outbound_verify)
        if problem:
            return graph_error(400, "InvalidRequest" if "timed out" in problem else "ValidationError", problem)
    with emulator.subscriptions.lock:
        sub.expiration = expiration
        sub.reauthorized(emulator.clock.now())  # renewing also reauthorizes
        if new_url:
            sub.notification_url = new_url
        for key, attr in (("encryptionCertificate", "encryption_certificate"), ("encryptionCertificateId", "encryption_certificate_id")):
            if key in body:
                setattr(sub, attr, body[key])
    emulator.record("subscription.renewed", id=sub.id)
    return jsonify(sub.to_graph())


@bp.post("/<subscription_id>/reauthorize")
@require_roles()
def reauthorize(subscription_id: str):
    emulator = _emulator()
    emulator.faults.maybe_fail("subscriptions", request.method, request.path)
    throttled = _throttle_writes()
    if throttled:
        return throttled
    sub = _own(subscription_id)
    if sub is None:
        return _not_found(subscription_id)
    with emulator.subscriptions.lock:
        sub.reauthorized(emulator.clock.now())
    emulator.record("subscription.reauthorized", id=sub.id)
    return "", 204


@bp.delete("/<subscription_id>")
@require_roles()
def delete(subscription_id: str):
    emulator = _emulator()
    emulator.faults.maybe_fail("subscriptions", request.method, request.path)
    throttled = _throttle_writes()
    if throttled:
        return throttled
    with emulator.subscriptions.lock:
        sub = _own(subscription_id)
        if sub is None:
            return _not_found(subscription_id)
        del emulator.subscriptions.items[subscription_id]
    emulator.record("subscription.deleted", id=subscription_id)
    return "", 204

