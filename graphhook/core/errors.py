"""Every error graphhook raises, under one root.

::

    GraphhookError
    ├── ConfigError                 a setting or the configuration file is missing or wrong
    ├── NotificationError           a notification (or collection) cannot be accepted
    │   ├── MalformedNotification   not JSON, wrong shape, missing fields, nested too deep → 400
    │   │   └── TooManyNotifications more items in one POST than GRAPHHOOK_MAX_NOTIFICATIONS → 413
    │   └── RejectedNotification    well-formed but fails a check (reason: str) → dropped, counted
    ├── DecryptionError             rich-notification content cannot be verified or decrypted
    ├── AuthError                   no token from the identity platform (``error`` code kept)
    ├── ActionError                 a rule's actions failed; the job is retried with back-off
    ├── WebhookError                an outbound webhook delivery failed (``permanent``: do not retry)
    │   └── SignatureError          a webhook signature is missing, malformed, stale or wrong
    └── GraphError                  Microsoft Graph answered with an error (status, code, message)
        ├── ThrottledError          429 / 503 / 504 still failing after the retry budget
        │   └── MailboxBusy         a worker's mailbox is in Graph's Retry-After: the job is deferred, not slept
        ├── AccessDeniedError       401 / 403 (token refused, permission missing)
        ├── NotFoundError           404
        └── GoneError               410 (e.g. delta SyncStateNotFound)

Messages quote the offending value but never a secret.
"""

from __future__ import annotations


class GraphhookError(Exception):
    """Root of all graphhook errors."""


class ConfigError(GraphhookError):
    """A setting or the configuration file is missing or invalid."""


class NotificationError(GraphhookError):
    """A notification or notification collection cannot be accepted."""


class MalformedNotification(NotificationError):
    """The request body is not a notification collection Graph would send."""


class TooManyNotifications(MalformedNotification):
    """A collection with more items than one POST may carry (GRAPHHOOK_MAX_NOTIFICATIONS)."""


class RejectedNotification(NotificationError):
    """A well-formed notification that fails a check; ``reason`` is a short metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class DecryptionError(GraphhookError):
    """Encrypted resource data failed verification or could not be decrypted."""


class AuthError(GraphhookError):
    """The identity platform refused to issue a token; ``code`` is its ``error`` value."""

    def __init__(self, code: str, message: str, error_codes: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.error_codes = error_codes


class ActionError(GraphhookError):
    """One or more rule actions failed for a message; raised so RQ retries the job."""


class WebhookError(GraphhookError):
    """An outbound webhook delivery failed; ``permanent`` means retrying cannot help (e.g. 4xx)."""

    def __init__(self, message: str, *, status: int = 0, permanent: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent


class SignatureError(WebhookError):
    """A graphhook webhook signature failed verification (receivers raise this)."""


class GraphError(GraphhookError):
    """Microsoft Graph answered with an error status."""

    def __init__(self, status: int, code: str, message: str, *, method: str = "", url: str = "") -> None:
        super().__init__(f"{method} {url} → {status} {code}: {message}".strip())
        self.status = status
        self.code = code
        self.graph_message = message
        self.method = method
        self.url = url


class ThrottledError(GraphError):
    """Graph kept answering 429/503/504 beyond the retry budget."""


class MailboxBusy(ThrottledError):
    """Graph asked us to wait before the next request to this mailbox; a worker defers the job instead of sleeping.

    ``seconds`` is how long until the mailbox's Retry-After has passed (workers/concurrent.py reschedules the
    job for then through RQ's scheduler, so no thread sleeps through it).
    """

    def __init__(self, mailbox: str, seconds: float, *, method: str = "", url: str = "") -> None:
        super().__init__(429, "MailboxBusy", f"mailbox {mailbox!r} is throttled for {seconds:.1f}s more",
                         method=method, url=url)
        self.mailbox = mailbox
        self.seconds = max(0.0, seconds)


class NotFoundError(GraphError):
    """The resource does not exist (404)."""


class AccessDeniedError(GraphError):
    """Graph refused the token or the app lacks a permission (401 / 403)."""


class GoneError(GraphError):
    """The resource or sync state is gone (410); a delta sync must start over."""
