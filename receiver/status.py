"""The status page at ``/status``: is every subscription alive, is mail flowing, are rules firing.

Server-rendered (one Jinja template, no external assets, a few lines of
script for the countdowns), read straight from Redis by
:mod:`receiver.statusdata`. Behind authentication from the environment:

- ``GRAPHHOOK_STATUS_TOKEN``: ``Authorization: Bearer <token>`` (scripts, probes);
- ``GRAPHHOOK_STATUS_USER`` + ``GRAPHHOOK_STATUS_PASSWORD``: HTTP basic auth (browsers).

With neither set the page does not exist (404). Credentials are compared in
constant time, and an address that fails them ``GRAPHHOOK_STATUS_MAX_FAILURES``
times in a window gets 429 (:mod:`receiver.loginlimit`). ``GET /metrics`` on
the public port sits behind the same guard (the private listener needs none:
:mod:`receiver.metrics`). The retry button is a POST carrying a CSRF token — an HMAC of
a timestamp keyed by the configured credentials, so every web process
accepts it without shared sessions — and unsafe requests from another origin
are refused (browsers resend basic-auth credentials to cross-site forms).

rq-dashboard is not mounted (it was at ``/status/rq``): whatever serializer it is given, it
fetches a job's page, deletes and requeues with RQ's default, pickle, so a job planted in Redis
would run in this process (graphhook/core/jobformat.py, docs/observability.md).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import Blueprint, Flask, Response, abort, current_app, redirect, render_template, request, url_for
from rq.exceptions import InvalidJobOperation, NoSuchJobError

from graphhook.core import jobformat, logs
from graphhook.core.settings import Settings
from receiver.loginlimit import LoginLimit
from receiver.metrics import redis_collector
from receiver.statusdata import gather

log = logging.getLogger("graphhook.status")

CSRF_MAX_AGE = 4 * 3600  # s a rendered page's retry buttons stay valid
REFRESH_SECONDS = 30  # the page reloads itself this often
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

bp = Blueprint("status", __name__, template_folder="templates")


def init_app(app: Flask, settings: Settings) -> None:
    """Wire observability into the receiver: redacted JSON logs, worker metrics, ``/status`` and ``/metrics``."""
    logs.install(settings, process="web")
    app.config["METRICS"].add_collector(redis_collector(settings, app.config["REDIS"]))
    clock = app.config["CLOCK"]
    app.config["LOGIN_LIMIT"] = LoginLimit(app.config["REDIS"], limit=settings.status_max_failures,
                                           window=settings.status_failure_window_seconds,
                                           clock=lambda: clock().timestamp())
    app.register_blueprint(bp)


# --- authentication --------------------------------------------------------------------------

def _settings() -> Settings:
    return current_app.config["SETTINGS"]


def utc_now() -> dt.datetime:
    """The receiver's default clock: the current time in UTC."""
    return dt.datetime.now(dt.timezone.utc)


def _now() -> dt.datetime:
    """What time it is, from the app's clock (``create_app(clock=...)``)."""
    return current_app.config["CLOCK"]()


def configured(settings: Settings) -> bool:
    """Whether any status credential is set (otherwise the page is 404)."""
    return bool(settings.status_token or (settings.status_user and settings.status_password))


def authorized(settings: Settings, header: str | None) -> str | None:
    """``"bearer"`` or ``"basic"`` when the Authorization header carries configured credentials, else None."""
    scheme, _, value = (header or "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and settings.status_token:
        if hmac.compare_digest(value.encode(), settings.status_token.encode()):
            return "bearer"
    if scheme.lower() == "basic" and settings.status_user and settings.status_password:
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        ok_user = hmac.compare_digest(user.encode(), settings.status_user.encode())
        ok_password = hmac.compare_digest(password.encode(), settings.status_password.encode())
        if sep and ok_user and ok_password:
            return "basic"
    return None


def _guard() -> Response | None:
    """before_request: 404 when disabled, 429 after too many failures, 401 without credentials, 403 cross-origin."""
    settings = _settings()
    if not configured(settings):
        abort(404)
    limit: LoginLimit = current_app.config["LOGIN_LIMIT"]
    address = request.remote_addr or ""
    header = request.headers.get("Authorization")
    try:
        wait = limit.retry_after(address)
        how = None if wait else authorized(settings, header)
        if not wait and how is None and header:  # a browser's first, credential-less request is no failure
            limit.failed(address)
    except redis.RedisError as exc:  # cannot count failures: refuse rather than allow unlimited guessing
        log.error("status login limit: redis unavailable: %s", type(exc).__name__)
        return Response("status unavailable: Redis does not answer\n", 503, {"Content-Type": "text/plain"})
    if wait:
        log.warning("status login refused: too many failures from one address", extra={"client": address})
        return Response("too many failed logins, try again later\n", 429,
                        {"Retry-After": str(wait), "Content-Type": "text/plain"})
    if how is None:
        challenge = 'Basic realm="graphhook status", charset="UTF-8"' if settings.status_user else 'Bearer realm="graphhook status"'
        return Response("authentication required\n", 401, {"WWW-Authenticate": challenge, "Content-Type": "text/plain"})
    if request.method in UNSAFE and how == "basic" and not _same_origin():
        return Response("cross-origin request refused\n", 403, {"Content-Type": "text/plain"})
    return None


def _same_origin() -> bool:
    """A browser's unsafe request came from this site (Sec-Fetch-Site, else Origin, else Referer)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site:
        return site in ("same-origin", "none")
    source = request.headers.get("Origin") or request.headers.get("Referer") or ""
    if not source:
        return False
    ours = urlsplit(request.host_url)
    theirs = urlsplit(source)
    return (theirs.scheme, theirs.netloc) == (ours.scheme, ours.netloc)


bp.before_request(_guard)


# --- CSRF ----------------------------------------------------------------------------------------

def _csrf_key(settings: Settings) -> bytes:
    material = "\x1f".join((settings.status_token, settings.status_user, settings.status_password)).encode()
    return hashlib.sha256(b"graphhook status csrf\x00" + material).digest()


def csrf_token(settings: Settings, now: float | None = None) -> str:
    """``<unix seconds>.<hex HMAC>``: proves the form was rendered by this server for these credentials."""
    stamp = str(int(time.time() if now is None else now))
    return f"{stamp}.{hmac.new(_csrf_key(settings), stamp.encode(), hashlib.sha256).hexdigest()}"


def csrf_valid(settings: Settings, token: str | None, now: float | None = None) -> bool:
    """Whether ``token`` came from :func:`csrf_token` with these credentials within CSRF_MAX_AGE."""
    stamp, _, mac = (token or "").partition(".")
    if not stamp.isdigit() or not mac:
        return False
    expected = hmac.new(_csrf_key(settings), stamp.encode(), hashlib.sha256).hexdigest()
    age = (time.time() if now is None else now) - int(stamp)
    return hmac.compare_digest(expected, mac) and -60 <= age <= CSRF_MAX_AGE


# --- views ---------------------------------------------------------------------------------------

@bp.get("/status")
def page() -> Response:
    """The status page."""
    settings = _settings()
    r: redis.Redis = current_app.config["REDIS"]
    now = _now()
    try:
        status = gather(r, margin=dt.timedelta(minutes=settings.renew_margin_minutes), now=now)
    except redis.RedisError as exc:
        log.error("status page: redis unavailable: %s", type(exc).__name__)
        return Response("status unavailable: Redis does not answer\n", 503, {"Content-Type": "text/plain"})
    body = render_template("status.html", status=status, csrf=csrf_token(settings, now.timestamp()),
                           refresh=REFRESH_SECONDS, notice=request.args.get("notice", "")[:200])
    return Response(body, 200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
                                "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                "script-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"})


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text on the public port, for the operator's scraper only (the private listener needs no login)."""
    body, content_type = current_app.config["METRICS"].render()
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})


@bp.post("/status/jobs/<job_id>/retry")
def retry(job_id: str) -> Any:
    """Put a failed job back on its queue (RQ's FailedJobRegistry.requeue), then back to the page."""
    settings = _settings()
    if not csrf_valid(settings, request.form.get("csrf"), _now().timestamp()):
        return Response("invalid or expired form token: reload the status page and try again\n", 400,
                        {"Content-Type": "text/plain"})
    r: redis.Redis = current_app.config["REDIS"]
    try:
        job = jobformat.fetch(job_id, r)  # JSON only: a planted pickle is never unpickled
        job.requeue()
    except NoSuchJobError:
        return redirect(url_for("status.page", notice=f"job {job_id} no longer exists"), 303)
    except InvalidJobOperation:
        return redirect(url_for("status.page", notice=f"job {job_id} is not failed any more"), 303)
    # The description, not func_name: reading func_name decodes the data, which may be refused (not JSON).
    log.info("failed job %s (%.200s) requeued from the status page", job_id, job.description or "",
             extra={"job_id": job_id})
    return redirect(url_for("status.page", notice=f"job {job_id} requeued"), 303)
