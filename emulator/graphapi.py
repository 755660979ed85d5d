"""Common plumbing of the ``/v1.0`` API: bearer-token checks, permissions and Graph's error shape."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from typing import Any, Callable

import jwt
from flask import current_app, g, jsonify, request


def graph_error(status: int, code: str, message: str):
    """Graph's error body: ``{"error": {"code", "message", "innerError": {date, request-id, client-request-id}}}``."""
    request_id = str(uuid.uuid4())
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": request.headers.get("client-request-id", request_id),
            },
        }
    }
    return jsonify(body), status


def authenticate() -> Any:
    """Check the bearer token; set ``g.app_id`` and ``g.roles``; return an error response or None."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
    try:
        claims = current_app.config["EMULATOR"].directory.verify_access_token(header[7:])
    except jwt.ExpiredSignatureError:
        return graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
    except jwt.PyJWTError:
        return graph_error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience or signature.")
    g.app_id = claims["appid"]
    g.roles = frozenset(claims.get("roles", ()))
    return None


def require_roles(*any_of: str) -> Callable:
    """Answer 403 unless the token carries one of ``any_of`` (no names: any valid token)."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any):
            if any_of and not (g.roles & set(any_of)):
                return graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            return view(*args, **kwargs)

        return wrapper

    return decorator


def has_full_read() -> bool:
    """Mail.Read or Mail.ReadWrite: body, attachments and sub-folders are visible."""
    return bool(g.roles & {"Mail.Read", "Mail.ReadWrite"})
