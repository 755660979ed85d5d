"""The subscription validation handshake: a predicate and a response builder.

Graph POSTs ``?validationToken=…`` to notificationUrl and lifecycleNotificationUrl
and expects, within 10 s, ``200 OK``, ``text/plain`` and the URL-decoded token as
the body (https://learn.microsoft.com/graph/change-notifications-delivery-webhooks#notificationurl-validation).
"""

from __future__ import annotations

from typing import Mapping

from graphhook.core.errors import MalformedNotification


def validation_token(query: Mapping[str, str], *, max_length: int) -> str | None:
    """The decoded token if this request is a handshake, else None; too long → MalformedNotification."""
    token = query.get("validationToken")
    if token is None:
        return None
    if len(token) > max_length:
        raise MalformedNotification(f"validationToken is longer than {max_length} characters")
    return token


def validation_response(token: str) -> tuple[bytes, int, dict[str, str]]:
    """Body, status and headers that echo the token exactly."""
    return token.encode("utf-8"), 200, {
        "Content-Type": "text/plain; charset=utf-8",
        "X-Content-Type-Options": "nosniff",
    }
