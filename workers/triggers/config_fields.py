"""Field validators of the configuration file, and the parsing of rule actions.

Every error names the file, the rule and the field and quotes the bad value
(:class:`_Where`); secrets are never quoted. Used by :mod:`workers.triggers.config`.
"""

from __future__ import annotations

import ipaddress
import re
import string
from types import MappingProxyType
from typing import Any, Mapping
from urllib.parse import urlsplit

from graphhook.core.errors import ConfigError
from workers.triggers.model import Action

SECRET_KEYS = {"secret", "password", "token", "api_key", "apikey", "client_secret", "authorization"}
TEMPLATE_FIELDS = ("subject", "sender", "sender_name", "mailbox", "folder", "rule", "received", "weblink",
                   "id", "internet_message_id")
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class _Where:
    """Builds error messages that name the file, the rule and the field."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {message}")


def _webhook_url(url: Any, where: str, w: _Where) -> str:
    """An https URL, or plain http to a loopback host; the *parsed* host decides, never a prefix.

    ``http://127.evil.example/`` and ``http://localhost:80@evil.example/`` start like loopback
    URLs but go to evil.example: the host is what urllib parses, and it must be a loopback IP
    literal (127.0.0.0/8, ::1) or exactly ``localhost``. User info (``user:pass@``) is refused in
    any URL: it only hides the real host from a reader, and a credential in the file would be
    quoted in errors (sign webhooks with ``secret_env`` instead).
    """
    if not isinstance(url, str) or not re.match(r"https?://[^/\s]+", url):
        raise w.error(f"{where}: field url", f"expected an http(s) URL, got {url!r}")
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname or "", parts.port  # .port raises ValueError on a bad port
    except ValueError as exc:
        raise w.error(f"{where}: field url", f"expected an http(s) URL, got {url!r}") from exc
    if "@" in parts.netloc:
        raise w.error(f"{where}: field url", "user info (user:password@) is not allowed in a webhook URL")
    if not host:
        raise w.error(f"{where}: field url", f"expected an http(s) URL with a host, got {url!r}")
    if parts.scheme.lower() == "http" and not _is_loopback(host):
        raise w.error(f"{where}: field url", f"plain http is only allowed to loopback; use https, got {url!r}")
    return url


def _is_loopback(host: str) -> bool:
    """A loopback IP literal or exactly ``localhost`` (RFC 6761 6.3); no other name is trusted."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _mapping(value: Any, where: str, w: _Where, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise w.error(where, f"expected a mapping, got {value!r}")
    for key in value:
        if key not in allowed:
            raise w.error(f"{where}: field {key}", f"unknown field {key!r}; expected one of {', '.join(allowed)}")
    return value


def _refuse_inline_secrets(value: Any, where: str, w: _Where) -> None:
    """Secrets belong in the environment: refuse any secret-looking key, without quoting its value."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if str(key).lower() in SECRET_KEYS:
                raise w.error(f"{where}: field {key}",
                              "inline secrets are not allowed; put the value in an environment variable "
                              "and give its NAME instead (e.g. secret_env: SOAR_WEBHOOK_SECRET)")
            _refuse_inline_secrets(inner, f"{where}.{key}" if where else str(key), w)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            _refuse_inline_secrets(inner, f"{where}[{i}]", w)


def _bool(value: Any, where: str, w: _Where) -> bool:
    if not isinstance(value, bool):
        raise w.error(where, f"expected true or false, got {value!r}")
    return value


def _addresses(value: Any, where: str, w: _Where) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise w.error(where, f"expected an email address or a list of them, got {value!r}")
    for item in items:
        if not isinstance(item, str) or not _ADDRESS.fullmatch(item.strip()):
            raise w.error(where, f"not an email address: {item!r}")
    return tuple(i.strip().lower() for i in items)


def _template(value: Any, where: str, w: _Where) -> str:
    """A ``$field`` template (string.Template); unknown fields are errors, not silent blanks."""
    if not isinstance(value, str):
        raise w.error(where, f"expected text, got {value!r}")
    template = string.Template(value)
    if not template.is_valid():
        raise w.error(where, f"invalid template {value!r} (write $$ for a literal $)")
    unknown = [i for i in template.get_identifiers() if i not in TEMPLATE_FIELDS]
    if unknown:
        raise w.error(where, f"unknown template field ${unknown[0]} in {value!r}; expected one of "
                             + ", ".join("$" + f for f in TEMPLATE_FIELDS))
    return value


def _folder(value: Any, where: str, w: _Where) -> str:
    if not isinstance(value, str) or not value.strip("/ "):
        raise w.error(where, f"expected a folder name or path such as 'Quarantine' or 'Inbox/Phish', got {value!r}")
    return value.strip("/ ")


ACTION_KINDS = ("move", "copy", "forward", "delete", "mark_read", "mark_unread", "categorise", "categorize",
                "flag", "reply", "alert", "webhook", "handler")


def _action(spec: Any, where: str, w: _Where, cfg: dict[str, Any]) -> Action:
    """Parse one ``{kind: options}`` action; shorthand scalars are accepted where unambiguous."""
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise w.error(where, f"expected a single-key mapping such as {{move: Quarantine}}, got {spec!r}")
    kind, value = next(iter(spec.items()))
    here = f"{where}.{kind}"
    if kind not in ACTION_KINDS:
        raise w.error(where, f"unknown action {kind!r}; expected one of {', '.join(ACTION_KINDS)}")
    opts: dict[str, Any]
    if kind in ("move", "copy"):
        if isinstance(value, str):
            value = {"folder": value}
        m = _mapping(value, here, w, ("folder", "create"))
        opts = {"folder": _folder(m.get("folder"), f"{here}.folder", w),
                "create": _bool(m.get("create", True), f"{here}.create", w)}
    elif kind == "forward":
        m = _mapping(value, here, w, ("to", "comment"))
        opts = {"to": _addresses(m.get("to"), f"{here}.to", w), "comment": _template(m.get("comment", ""), f"{here}.comment", w)}
    elif kind == "delete":
        mode = value if isinstance(value, str) else "hard" if value is True else None
        if isinstance(value, Mapping):
            mode = _mapping(value, here, w, ("mode",)).get("mode")
        if mode not in ("soft", "hard", "purge"):
            raise w.error(here, f"expected soft (to Deleted Items), hard or purge, got {value!r}")
        kind, opts = "delete", {"mode": mode}
    elif kind in ("mark_read", "mark_unread"):
        read = _bool(value, here, w) == (kind == "mark_read")
        kind, opts = "mark_read", {"read": read}
    elif kind in ("categorise", "categorize"):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
            raise w.error(here, f"expected a category name or a list of them, got {value!r}")
        kind, opts = "categorise", {"categories": tuple(items)}
    elif kind == "flag":
        status = {True: "flagged", False: "notFlagged"}.get(value, value) if isinstance(value, bool) else value
        if status not in ("flagged", "complete", "notFlagged"):
            raise w.error(here, f"expected true, false, flagged, complete or notFlagged, got {value!r}")
        opts = {"status": status}
    elif kind == "reply":
        if isinstance(value, str):
            value = {"comment": value}
        m = _mapping(value, here, w, ("comment", "all"))
        opts = {"comment": _template(m.get("comment", ""), f"{here}.comment", w), "all": _bool(m.get("all", False), f"{here}.all", w)}
    elif kind == "alert":
        m = _mapping(value, here, w, ("to", "subject", "body", "from"))
        sender = m.get("from") or cfg.get("alert_sender")
        if not sender and not cfg.get("tenants"):  # with tenants:, each tenant's alerts.from may supply it
            raise w.error(f"{here}.from", "an alert needs a sending mailbox: set from here or alerts.from at the top level")
        opts = {"to": _addresses(m.get("to"), f"{here}.to", w),
                "from": _addresses(sender, f"{here}.from", w)[0] if sender else "",
                "tenant_sender": not m.get("from"),  # no from: here: the tenant's alerts.from, if it sets one
                "subject": _template(m.get("subject", "graphhook: rule $rule matched \"$subject\""), f"{here}.subject", w),
                "body": _template(m.get("body", "Rule $rule matched a message in $mailbox from $sender: $subject\n$weblink"), f"{here}.body", w)}
    else:  # webhook / handler, by name
        names = cfg["webhooks"] if kind == "webhook" else cfg["handlers"]
        if not isinstance(value, str) or value not in names:
            known = ", ".join(sorted(names)) or "none defined"
            raise w.error(here, f"no {kind} named {value!r} (known: {known})")
        opts = {"name": value}
    return Action(kind, MappingProxyType(opts))
