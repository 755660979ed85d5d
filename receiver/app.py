"""The web process: ``create_app()`` wires the handshake, intake, health and metrics endpoints.

Flask is only an adapter here: parsing and checks live in pure modules
(:mod:`graphhook.core.notifications`, :mod:`receiver.intake`, :mod:`receiver.handshake`,
:mod:`graphhook.core.richnotify`); Redis I/O lives in :mod:`receiver.store`. Accepted
notifications are persisted as RQ jobs (by dotted name) before the 202; if Redis
cannot take them the answer is 503 so that Graph retries
(https://learn.microsoft.com/graph/change-notifications-delivery-webhooks#processing-the-change-notification).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from typing import Callable

import redis
from flask import Flask, Response, current_app, request
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from graphhook.core.errors import ConfigError, MalformedNotification, RejectedNotification, TooManyNotifications
from graphhook.core.notifications import Collection, Notification
from graphhook.core.redisconn import connect
from graphhook.core.richnotify import OpenIdJwks, SigningKeysUnavailable, TokenValidator
from graphhook.core.settings import Settings
from receiver.bodydeadline import BodyDeadline
from receiver.handshake import validation_response, validation_token
from receiver.intake import KnownSubscription, check
from receiver.lane import LargeRequestLane
from receiver.metrics import Metrics
from receiver.status import init_app as init_observability
from receiver.status import utc_now
from receiver.store import LIFECYCLE_JOB, PROCESS_JOB, JobWriter, SubscriptionLookup

log = logging.getLogger("graphhook.receiver")

# Graph's publisher gives up after 3 s (graph-protocol.md §2): Redis must answer, or fail, well before.
REDIS_TIMEOUT = 1.0  # s, connect and per command
INTAKE_ENDPOINTS = ("notifications", "lifecycle")

__all__ = ["create_app", "ConfigError", "PROCESS_JOB", "LIFECYCLE_JOB"]


def create_app(settings: Settings | None = None, *, redis_client: redis.Redis | None = None,
               token_validator: TokenValidator | None = None,
               clock: Callable[[], dt.datetime] | None = None) -> Flask:
    """Build the receiver; settings are read from the environment when not given.

    ``clock`` says what time it is (an aware datetime) to the status page; tests pass a fixed one.
    """
    settings = settings or Settings.from_env()
    # One immediate retry (a pooled connection may be stale after a Redis restart), no back-off:
    # redis-py's default of 10 retries with exponential back-off would outlast Graph's 3 s.
    r = redis_client or connect(settings, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT,
                                retry=Retry(NoBackoff(), 1))
    # No static route: Flask's default /static/<path> would serve files from the working directory.
    app = Flask("graphhook.receiver", static_folder=None)
    app.config.update(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        REDIS=r,
        LOOKUP=SubscriptionLookup(r, ttl=settings.registry_cache_seconds),
        JOBS=JobWriter(r, settings.queue_name),
        METRICS=Metrics(),
        CLOCK=clock or utc_now,
        # With tenants: every subscription records its app id (the audience of its validation tokens), so the
        # receiver needs no AZURE_CLIENT_ID of its own: one app per customer may leave it unset.
        NEEDS_CLIENT_ID=not _declares_tenants(settings.config_path),
        TOKENS=token_validator or TokenValidator(
            client_id=settings.client_id,
            key_source=OpenIdJwks(settings.openid_config_url, ca_bundle=settings.ca_bundle).key_for),
    )
    # Inside ProxyFix: the body deadline runs for every request, whatever the proxies say. Inside the deadline,
    # once their body is read, large requests queue for their process's one lane, so that small ones (Graph's)
    # are never stuck behind a crowd of them (receiver/lane.py).
    app.wsgi_app = BodyDeadline(LargeRequestLane(app.wsgi_app),  # type: ignore[method-assign]
                                seconds=settings.body_timeout_seconds, max_bytes=settings.max_body_bytes)
    if settings.proxy_hops:  # the client's address as the proxies in front saw it (the status login limit keys on it)
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops, x_proto=0)  # type: ignore[method-assign]
    app.add_url_rule("/notifications", "notifications", _notifications, methods=["POST"])
    app.add_url_rule("/lifecycle", "lifecycle", _notifications, methods=["POST"])
    app.add_url_rule("/healthz", "healthz", _healthz, methods=["GET"])
    app.add_url_rule("/readyz", "readyz", _readyz, methods=["GET"])
    # JSON logs, /status and GET /metrics behind the status credentials (receiver/status.py); the
    # unauthenticated metrics listener is private, in the gunicorn master (receiver/metrics.py).
    init_observability(app, settings)

    # Only intake errors are counted and answered here; other pages keep Flask's own error responses.
    @app.errorhandler(413)
    def _too_large(exc: HTTPException) -> Response | HTTPException:
        if request.endpoint not in INTAKE_ENDPOINTS:
            return exc
        app.config["METRICS"].rejected("body_too_large")
        return _text(f"body larger than {settings.max_body_bytes} bytes\n", 413)

    @app.errorhandler(400)
    def _bad_request(exc: HTTPException) -> Response | HTTPException:  # e.g. an undecodable body or query
        if request.endpoint not in INTAKE_ENDPOINTS:
            return exc
        app.config["METRICS"].rejected("bad_request")
        return _text("bad request\n", 400)

    return app


_TEXT_HEADERS = (("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff"))


def _text(body: str, status: int) -> Response:
    return Response(body, status, list(_TEXT_HEADERS))


def _notifications() -> Response:
    """Handshake, or check, persist and acknowledge a notification collection."""
    config = current_app.config
    settings: Settings = config["SETTINGS"]
    metrics: Metrics = config["METRICS"]
    try:  # Graph's notifications carry no query string: parse one only when there is one
        query = request.args if request.query_string else {}
        token = validation_token(query, max_length=settings.max_validation_token)
    except MalformedNotification as exc:
        metrics.rejected("validation_token_too_long")
        return _text(f"{exc}\n", 400)
    if token is not None:
        metrics.handshake()
        body, status, headers = validation_response(token)
        return Response(body, status=status, headers=headers)
    started = time.perf_counter()
    try:
        return _intake(config, settings, metrics)
    finally:
        metrics.observe(time.perf_counter() - started)


def _intake(config: dict, settings: Settings, metrics: Metrics) -> Response:
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        metrics.rejected("content_type")
        return _text("Content-Type must be application/json\n", 415)
    try:
        collection = Collection.parse(request.get_data(cache=False), max_items=settings.max_notifications)
    except TooManyNotifications as exc:  # before any item is checked, looked up or logged
        metrics.rejected("too_many_notifications")
        log.warning("rejected a POST: %s", exc)
        return _text(f"{exc}\n", 413)
    except MalformedNotification as exc:
        metrics.rejected("malformed")
        log.warning("rejected malformed collection: %s", exc)
        return _text(f"{exc}\n", 400)
    metrics.received(len(collection.notifications) + len(collection.malformed))
    rejected = _Rejections(Counter({"malformed": len(collection.malformed)} if collection.malformed else {}))

    try:
        accepted, known = _checked(config, settings, collection, rejected)
        accepted = _verified(config, settings, collection, accepted, known, rejected)
        changes, events = [], []
        for n in accepted:
            (events if n.is_lifecycle else changes).append(n.to_job())
        config["JOBS"].persist(changes, events)
    except redis.RedisError as exc:
        metrics.unavailable("redis")
        log.error("redis unavailable, asking Graph to retry: %s", type(exc).__name__)
        return _text("storage unavailable, retry later\n", 503)
    except SigningKeysUnavailable as exc:
        metrics.unavailable("signing_keys")
        log.error("cannot verify validation tokens, asking Graph to retry: %s", exc)
        return _text("cannot verify validation tokens now, retry later\n", 503)
    finally:
        _summarize(metrics, collection, rejected)
    for (kind, tenant), count in Counter(("lifecycle" if n.is_lifecycle else "change", _tenant(known, n))
                                         for n in accepted).items():
        metrics.accepted(kind, count, tenant=tenant)
    return _text("", 202)


def _tenant(known: dict[str, KnownSubscription | None], notification: Notification) -> str:
    """The metrics label of a notification's tenant: its subscription's, from the registry ("" when unknown)."""
    subscription = known.get(notification.subscription_id)
    return subscription.tenant if subscription is not None else ""


class _Rejections:
    """What one POST had rejected: counts by reason (and by tenant), and the first detail worth an operator's eye."""

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts
        self.by_tenant: Counter[tuple[str, str]] = Counter({(r, ""): n for r, n in counts.items()})
        self.detail = ""

    def add(self, exc: RejectedNotification, tenant: str = "") -> None:
        """Count one rejected notification; ``tenant`` is its registry tenant's name ("" when not known)."""
        self.counts[exc.reason] += 1
        self.by_tenant[(exc.reason, tenant)] += 1
        self.detail = self.detail or str(exc)[:200]


def _summarize(metrics: Metrics, collection: Collection, rejected: _Rejections) -> None:
    """One log line per POST with rejections, counted by reason: never a line per item (a POST is attacker-sized)."""
    if not rejected.counts:
        return
    for (reason, tenant), count in rejected.by_tenant.items():
        metrics.rejected(reason, count, tenant=tenant)
    total = len(collection.notifications) + len(collection.malformed)
    reasons = ", ".join(f"{reason}={count}" for reason, count in sorted(rejected.counts.items()))
    first = rejected.detail or (collection.malformed[0][:200] if collection.malformed else "")
    log.warning("rejected %d of %d notification(s) of a POST (%s); first: %s",
                sum(rejected.counts.values()), total, reasons, first)


def _checked(config: dict, settings: Settings, collection: Collection, rejected: _Rejections,
             ) -> tuple[list[Notification], dict[str, KnownSubscription | None]]:
    """Notifications whose subscription, clientState, tenant and mailbox are ours; the rest counted by reason.

    Each distinct subscription id is looked up once (``SubscriptionLookup.find``), and the
    collection is at most GRAPHHOOK_MAX_NOTIFICATIONS long, so one POST costs one bounded script call.
    """
    if not collection.notifications:
        return [], {}
    known = config["LOOKUP"].find(n.subscription_id for n in collection.notifications)
    accepted = []
    for notification in collection.notifications:
        try:
            check(notification, known[notification.subscription_id], tenant_id=settings.tenant_id)
        except RejectedNotification as exc:
            rejected.add(exc, _tenant(known, notification))
            continue
        accepted.append(notification)
    return accepted, known


def _verified(config: dict, settings: Settings, collection: Collection, accepted: list[Notification],
              known: dict[str, KnownSubscription | None], rejected: _Rejections) -> list[Notification]:
    """All of ``accepted``, or none if the POST's validation tokens do not all verify.

    Rich notifications must carry tokens, and one bad token makes the whole POST
    suspect (https://learn.microsoft.com/graph/change-notifications-with-resource-data#validation-tokens-in-the-change-notification).
    A change of a rich subscription (the registry's ``rich``) needs them even when its
    ``encryptedContent`` was left out: otherwise dropping that field would skip the check.
    Lifecycle notifications carry none (change-notifications-lifecycle-events).
    Graph sends one token per app and tenant: each must be for the app and tenant the registry
    recorded for one of the accepted items' subscriptions, and each rich item's pair needs its own.
    The dataSignature check and decryption follow in the worker, before anything is acted on.
    """
    rich = [n for n in accepted if n.encrypted_content is not None
            or (not n.is_lifecycle and getattr(known.get(n.subscription_id), "rich", True))]
    if not accepted or not (rich or collection.validation_tokens):
        return accepted

    def party(n: Notification) -> tuple[str, str]:  # accepted items' subscriptions are all known
        return known[n.subscription_id].party(client_id=settings.client_id, tenant_id=settings.tenant_id)  # type: ignore[union-attr]

    try:
        if rich and not collection.validation_tokens:
            raise RejectedNotification("validation_token_missing", "rich notification without validationTokens")
        validator: TokenValidator = config["TOKENS"]
        validator.validate_all(collection.validation_tokens, parties={party(n) for n in accepted},
                               required={party(n) for n in rich})
    except RejectedNotification as exc:
        for n in accepted:
            rejected.add(exc, _tenant(known, n))
        return []
    return accepted


def _healthz() -> Response:
    return _text("ok\n", 200)


def _readyz() -> Response:
    """200 when Redis answers and the settings the receiver needs are present and valid."""
    settings: Settings = current_app.config["SETTINGS"]
    problems = []
    try:
        settings.validate()
        settings.require("REDIS_URL", *(("AZURE_CLIENT_ID",) if current_app.config["NEEDS_CLIENT_ID"] else ()))
    except ConfigError as exc:
        problems.append(f"settings: {exc}")
    try:
        current_app.config["REDIS"].ping()
    except redis.RedisError as exc:
        problems.append(f"redis unreachable: {type(exc).__name__}")
    if problems:
        return _text("\n".join(problems) + "\n", 503)
    return _text("ready\n", 200)



def _declares_tenants(path: str) -> bool:
    """Whether the configuration file declares ``tenants:`` (read once, at start; unreadable: it does not)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False  # the workers report what is wrong with it; the receiver keeps the single-tenant requirement
    return isinstance(data, dict) and bool(data.get("tenants"))
