"""Structured logs: one JSON object per line, correlated by ids, with secrets redacted.

Every process (web, worker, renewer, demo, one-off commands) calls
:func:`configure` once at its entry point. A line looks like::

    {"ts": "2026-11-27T10:00:00.123Z", "level": "info", "logger": "graphhook.jobs", "msg": "...",
     "process": "worker", "pid": 4242, "job_id": "…", "notification_id": "…", "message_id": "…"}

Correlation: ``job_id`` is the running RQ job (if any); other ids
(``notification_id``, ``subscription_id``, ``message_id``, ``mailbox``…) are
bound for a block with :func:`bind` and kept in a context variable, so they
follow the code that handles one notification without being passed around.

Redaction happens in a handler filter, so it covers every record that reaches
the handler — ours, RQ's, Flask's — including arguments and tracebacks:

- exact values registered with :func:`register_secret` (the client secret,
  certificate and key passwords, the cache key, status credentials, webhook
  signing secrets) and values of environment variables whose names look secret;
- patterns: ``Bearer …``, JWTs (``eyJ….….…``), and ``clientState``/``client_secret``/
  ``access_token``/``password``/``signature`` key-value pairs in JSON, reprs and query strings.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import os
import re
import sys
import threading
from typing import IO, Any, Iterator, Mapping

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6  # shorter values would redact ordinary words
CORRELATION_FIELDS = ("notification_id", "subscription_id", "job_id", "message_id", "change_type", "mailbox", "rule",
                      "webhook", "tenant")
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CACHE_KEY|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)
_PATTERNS = (
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]{8,}=*"), r"\1" + REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"""(?ix)
        (["']?\b(?:client_?state|client_?secret|access_?token|refresh_?token|id_?token|password|passwd|secret
               |authorization|x-graphhook-signature|client_?assertion)["']?\s*[:=]\s*)
        (["']?)(?!\[REDACTED)([^"'\s,;&}\]]+)"""), r"\1\2" + REDACTED),
    (re.compile(r"(://[^/\s:@]*:)([^@/\s]+)(@)"), r"\1" + REDACTED + r"\3"),  # user:password@ in URLs
)

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("graphhook_log_context", default={})
_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_secret_re: re.Pattern[str] | None = None


# --- redaction (pure) ------------------------------------------------------------------------

def register_secret(value: str | None) -> None:
    """Never log ``value`` (ignored when shorter than MIN_SECRET_LENGTH characters)."""
    global _secret_re
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        if value in _secrets:
            return
        _secrets.add(value)
        ordered = sorted(_secrets, key=len, reverse=True)  # longest first: a secret containing another
        _secret_re = re.compile("|".join(re.escape(s) for s in ordered))


def register_settings(settings: Any) -> None:
    """Register every secret a :class:`~graphhook.core.settings.Settings` holds."""
    for name in ("client_secret", "client_certificate_password", "encryption_key_password", "cache_key",
                 "status_token", "status_password"):
        register_secret(getattr(settings, name, ""))
    from urllib.parse import urlsplit

    with contextlib.suppress(ValueError):
        register_secret(urlsplit(getattr(settings, "redis_url", "") or "").password)


def register_environment(env: Mapping[str, str]) -> None:
    """Register values of environment variables whose names look secret (``*SECRET*``, ``*PASSWORD*``, ``*TOKEN*``…)."""
    for name, value in env.items():
        if _SECRET_NAME.search(name):
            register_secret(value)


def redact(text: str) -> str:
    """``text`` with registered secrets and secret-looking patterns replaced by ``[REDACTED]``."""
    if not text:
        return text
    pattern = _secret_re
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    for regex, replacement in _PATTERNS:
        text = regex.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Handler filter: renders the message, redacts it (and any traceback) in place; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 — a bad format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.exc_info = None  # the redacted text stands in for it
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# --- correlation -------------------------------------------------------------------------------

@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add correlation fields (None values are skipped) to every line logged inside the block."""
    added = {k: str(v) for k, v in fields.items() if v is not None and v != ""}
    token = _context.set({**_context.get(), **added})
    try:
        yield
    finally:
        _context.reset(token)


def current() -> dict[str, str]:
    """The correlation fields bound here, plus the running RQ job's id."""
    fields = dict(_context.get())
    job_id = _rq_job_id()
    if job_id and "job_id" not in fields:
        fields["job_id"] = job_id
    return fields


def _rq_job_id() -> str | None:
    rq = sys.modules.get("rq")  # only processes that use RQ have jobs; never import it for this
    if rq is None:
        return None
    try:
        job = rq.get_current_job()
    except Exception:  # noqa: BLE001 — no job context
        return None
    return job.id if job is not None else None


def notification_id(item: Mapping[str, Any]) -> str:
    """A stable id for one notification: Graph's ``id`` when present, else a hash of what identifies it.

    Duplicates of one delivery share it, so a notification can be followed from
    the receiver through every retry of its job.
    """
    if item.get("id"):
        return str(item["id"])
    import hashlib

    basis = "\x1f".join(str(item.get(k) or "") for k in ("subscriptionId", "changeType", "lifecycleEvent", "resource"))
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


# --- formatting --------------------------------------------------------------------------------

class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, process, pid, correlation ids, extras, exc."""

    def __init__(self, process: str = "") -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.process:
            line["process"] = self.process
        line["pid"] = record.process
        line.update(current())
        for name in CORRELATION_FIELDS:  # ``extra={"message_id": …}`` on a single call
            value = getattr(record, name, None)
            if value is not None:
                line[name] = str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, with the same correlation ids as ``k=v`` pairs."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = current()
        for name in CORRELATION_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                ids[name] = str(value)
        return text + "".join(f" {k}={v}" for k, v in ids.items())


# --- set-up --------------------------------------------------------------------------------------

class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler :func:`configure` installed, so configuring twice replaces it."""


def configure(settings: Any = None, *, process: str = "", env: Mapping[str, str] | None = None,
              stream: IO[str] | None = None, fmt: str | None = None, level: str | None = None) -> logging.Handler:
    """Log JSON (or text) lines to ``stream`` (stderr), redacted, from every logger; return the handler.

    ``settings`` supplies secrets, ``log_level`` and ``log_format``; ``env``
    (the process environment, given by the entry point) adds secret-looking variables.
    """
    if settings is not None:
        register_settings(settings)
    if env is not None:
        register_environment(env)
    fmt = (fmt or getattr(settings, "log_format", "") or "json").lower()
    level = (level or getattr(settings, "log_level", "") or "INFO").upper()
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(process or _process_name()) if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level)
    for other in root.handlers:  # e.g. a test runner's capture handler: redact there too
        if not any(isinstance(f, RedactingFilter) for f in other.filters):
            other.addFilter(RedactingFilter())
    return handler


def install(settings: Any, *, process: str = "web") -> None:
    """For app factories: register the settings' secrets; configure logging only if nobody has."""
    register_settings(settings)
    root = logging.getLogger()
    if not root.handlers:
        configure(settings, process=process)
    else:
        for handler in root.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())


def _process_name() -> str:
    return os.path.basename(sys.argv[0] or "python")
