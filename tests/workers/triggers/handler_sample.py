"""Handlers used by the tests, named by dotted path in test configurations."""

from __future__ import annotations

CALLS: list[str] = []


def on_email(email, api):
    """Record the call, then categorise and forward through the handler API."""
    CALLS.append(email["subject"])
    api.categorise("Handled")
    api.forward(["secops@contoso.com"], f"handler saw {email['subject']}")


def failing(email, api):
    """Always fails, to exercise retries."""
    CALLS.append("failing")
    raise RuntimeError("handler failed on purpose")
