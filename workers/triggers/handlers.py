"""Python handlers: user code called with the email record and a small API for mailbox actions.

A handler is named in the configuration by dotted path (``mypkg.handlers:on_email``
or ``mypkg.handlers.on_email``) or by an entry point in the ``graphhook.handlers``
group, so a package can ship handlers with ``pip install``. It is called as
``handler(email, api)``: ``email`` is the record (a plain dict, schema
``graphhook.email/1``) and ``api`` a :class:`HandlerAPI`. Actions taken through
the API go through the same idempotency markers as rule actions, so a retried
job does not forward or send twice. A handler that raises is retried with the
job's back-off.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from typing import Any, Callable, Protocol, Sequence

from graphhook.core.errors import ConfigError
from workers.triggers.model import Action, HandlerConfig

log = logging.getLogger("graphhook.handlers")

ENTRY_POINT_GROUP = "graphhook.handlers"
Handler = Callable[[dict[str, Any], "HandlerAPI"], Any]
_resolved: dict[tuple[str, str], Handler] = {}
# Where graphhook's own example handlers lived before the workers package was grouped by concept,
# so a configuration file written then keeps loading.
MOVED_MODULES = {"workers.handlers": "workers.triggers.handlers"}


class Performer(Protocol):
    """What the handler API needs of the action runner (:class:`workers.triggers.actions.Runner`)."""

    mailbox: str
    current_id: str

    def perform(self, scope: str, step: str, action: Action) -> str:
        """Run one action once per (scope, step), whatever retries happen."""


def resolve(handler: HandlerConfig, *, path: str = "") -> Handler:
    """Import the handler's function (cached); raise ConfigError naming the file, handler and field."""
    cache_key = (handler.path, handler.entry_point)
    if cache_key in _resolved:
        return _resolved[cache_key]
    where = f"{path + ': ' if path else ''}handler {handler.name!r}"
    if handler.path:
        module_name, sep, attr = handler.path.partition(":")
        if not sep:
            module_name, _, attr = handler.path.rpartition(".")
        module_name = MOVED_MODULES.get(module_name, module_name)
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # an ImportError or anything the module raises on import
            raise ConfigError(f"{where}: field path: cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from exc
        function = getattr(module, attr, None)
        if not callable(function):
            raise ConfigError(f"{where}: field path: module {module_name!r} has no callable {attr!r}")
    else:
        found = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == handler.entry_point]
        if not found:
            raise ConfigError(f"{where}: field entry_point: no entry point {handler.entry_point!r} "
                              f"in group {ENTRY_POINT_GROUP!r} (is its package installed?)")
        try:
            function = found[0].load()
        except Exception as exc:
            raise ConfigError(f"{where}: field entry_point: cannot load {handler.entry_point!r}: {type(exc).__name__}: {exc}") from exc
    _resolved[cache_key] = function
    return function


class HandlerAPI:
    """What a handler may do to the message it was called for; every call is idempotent under retries."""

    def __init__(self, runner: Performer, handler_name: str, *, scope: str = "") -> None:
        self._runner = runner
        self._scope = scope or f"handler:{handler_name}"
        self._step = 0
        self.log = logging.getLogger(f"graphhook.handlers.{handler_name}")

    @property
    def mailbox(self) -> str:
        """The mailbox the message is in."""
        return self._runner.mailbox

    @property
    def message_id(self) -> str:
        """The message's current id (it changes when the message is moved)."""
        return self._runner.current_id

    def _do(self, kind: str, **options: Any) -> str:
        self._step += 1
        return self._runner.perform(self._scope, str(self._step), Action(kind, options))

    def move(self, folder: str, *, create: bool = True) -> str:
        """Move the message to ``folder`` (a name or path), creating it if missing."""
        return self._do("move", folder=folder, create=create)

    def copy(self, folder: str, *, create: bool = True) -> str:
        """Copy the message to ``folder``."""
        return self._do("copy", folder=folder, create=create)

    def forward(self, to: Sequence[str], comment: str = "") -> str:
        """Forward the message with a comment; at most once per handler step."""
        return self._do("forward", to=tuple(to), comment=comment)

    def reply(self, comment: str, *, reply_all: bool = False) -> str:
        """Reply to the sender (or all)."""
        return self._do("reply", comment=comment, all=reply_all)

    def delete(self, mode: str = "soft") -> str:
        """Delete: ``soft`` (to Deleted Items), ``hard`` or ``purge``."""
        return self._do("delete", mode=mode)

    def mark_read(self, read: bool = True) -> str:
        """Mark the message read (or unread)."""
        return self._do("mark_read", read=read)

    def categorise(self, *categories: str) -> str:
        """Add categories to the message."""
        return self._do("categorise", categories=tuple(categories))

    def flag(self, status: str = "flagged") -> str:
        """Set the follow-up flag: flagged, complete or notFlagged."""
        return self._do("flag", status=status)

    def alert(self, to: Sequence[str], subject: str, body: str, *, sender: str) -> str:
        """Send an alert message from mailbox ``sender``."""
        return self._do("alert", to=tuple(to), subject=subject, body=body, **{"from": sender})

    def webhook(self, name: str) -> str:
        """Send the email event to a configured webhook."""
        return self._do("webhook", name=name)


def log_email(email: dict[str, Any], api: HandlerAPI) -> None:
    """Example handler: log one line per email (sender, subject, attachment count)."""
    sender = (email.get("from") or {}).get("address", "")
    api.log.info("%s: %r from %s, %d attachment(s)", api.mailbox, email.get("subject"), sender,
                 len(email.get("attachments") or []))
