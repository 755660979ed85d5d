"""The web process: ``create_app()`` wires the handshake, intake, health and metrics endpoints.

Flask is only an adapter here: parsing and checks live in pure modules
(:mod:`receiver.notifications`, :mod:`receiver.intake`, :mod:`receiver.handshake`);
accepted notifications are enqueued on RQ by dotted name — the receiver never
imports worker code.
"""

from __future__ import annotations

import logging
import time

import redis
from flask import Flask, Response, current_app, request
from rq import Queue

from . import keys
from .errors import ConfigError, MalformedNotification, RejectedNotification
from .handshake import validation_response, validation_token
from .intake import KnownSubscription, check
from .metrics import Metrics
from .notifications import Collection
from .redisconn import connect
from .settings import Settings

log = logging.getLogger("graphhook.receiver")

PROCESS_JOB = "workers.jobs.process_notifications"
LIFECYCLE_JOB = "workers.jobs.handle_lifecycle"


def create_app(settings: Settings | None = None, *, redis_client: redis.Redis | None = None) -> Flask:
    """Build the receiver; settings are read from the environment when not given."""
    settings = settings or Settings.from_env()
    app = Flask("graphhook.receiver")
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["REDIS"] = redis_client or connect(settings)
    app.config["QUEUE"] = Queue(settings.queue_name, connection=app.config["REDIS"])
    app.config["METRICS"] = Metrics()
    app.add_url_rule("/notifications", "notifications", _notifications, methods=["POST"])
    app.add_url_rule("/lifecycle", "lifecycle", _notifications, methods=["POST"])
    app.add_url_rule("/healthz", "healthz", _healthz, methods=["GET"])
    app.add_url_rule("/readyz", "readyz", _readyz, methods=["GET"])
    app.add_url_rule("/metrics", "metrics", _metrics, methods=["GET"])

    @app.errorhandler(413)
    def _too_large(_exc):
        app.config["METRICS"].rejected("body_too_large")
        return _text(f"body larger than {settings.max_body_bytes} bytes\n", 413)

    return app


def _text(body: str, status: int) -> Response:
    return Response(body, status=status, content_type="text/plain; charset=utf-8",
                    headers={"X-Content-Type-Options": "nosniff"})


def _notifications() -> Response:
    settings: Settings = current_app.config["SETTINGS"]
    metrics: Metrics = current_app.config["METRICS"]
    started = time.perf_counter()
    try:
        token = validation_token(request.args, max_length=settings.max_validation_token)
    except MalformedNotification as exc:
        metrics.rejected("validation_token_too_long")
        return _text(f"{exc}\n", 400)
    if token is not None:
        metrics.handshake()
        body, status, headers = validation_response(token)
        return Response(body, status=status, headers=headers)

    if not (request.mimetype or "").endswith("json"):
        metrics.rejected("content_type")
        return _text("Content-Type must be application/json\n", 415)
    try:
        collection = Collection.parse(request.get_data(cache=False))
    except MalformedNotification as exc:
        metrics.rejected("malformed")
        log.warning("rejected malformed collection: %s", exc)
        return _text(f"{exc}\n", 400)
    for problem in collection.malformed:
        metrics.rejected("malformed")
        log.warning("rejected malformed notification: %s", problem)

    r: redis.Redis = current_app.config["REDIS"]
    try:
        accepted = _accept(r, settings, metrics, collection)
        if accepted:
            _enqueue(accepted)
    except redis.RedisError as exc:
        metrics.unavailable()
        log.error("redis unavailable, asking Graph to retry: %s", type(exc).__name__)
        return _text("storage unavailable, retry later\n", 503)
    metrics.observe(time.perf_counter() - started)
    return _text("", 202)


def _accept(r: redis.Redis, settings: Settings, metrics: Metrics, collection: Collection):
    ids = sorted({n.subscription_id for n in collection.notifications})
    pipe = r.pipeline(transaction=False)
    for sid in ids:
        pipe.hgetall(keys.subscription(sid))
    known = {sid: KnownSubscription.from_redis(sid, values) for sid, values in zip(ids, pipe.execute())}
    accepted = []
    for notification in collection.notifications:
        try:
            check(notification, known[notification.subscription_id], tenant_id=settings.tenant_id)
        except RejectedNotification as exc:
            metrics.rejected(exc.reason)
            log.warning("rejected notification: %s", exc)
            continue
        accepted.append(notification)
    return accepted


def _enqueue(accepted) -> None:
    queue: Queue = current_app.config["QUEUE"]
    metrics: Metrics = current_app.config["METRICS"]
    changes = [n.to_job() for n in accepted if not n.is_lifecycle]
    events = [n.to_job() for n in accepted if n.is_lifecycle]
    if changes:
        queue.enqueue(PROCESS_JOB, changes)
    for event in events:
        queue.enqueue(LIFECYCLE_JOB, event)
    metrics.accepted(len(accepted))


def _healthz() -> Response:
    return _text("ok\n", 200)


def _readyz() -> Response:
    try:
        current_app.config["REDIS"].ping()
    except redis.RedisError as exc:
        return _text(f"redis unreachable: {type(exc).__name__}\n", 503)
    return _text("ready\n", 200)


def _metrics() -> Response:
    body, content_type = current_app.config["METRICS"].render()
    return Response(body, content_type=content_type)


__all__ = ["create_app", "ConfigError"]
