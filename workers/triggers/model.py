"""The configuration's values: what a loaded ``GRAPHHOOK_CONFIG`` is, as frozen dataclasses.

Parsing and validation live in :mod:`workers.triggers.config`; the code that acts on these values
(actions, webhooks, handlers, the rule engine) imports them from here, so it never depends on the loader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from graphhook.core.settings import Settings
from workers.triggers.rules import Condition, Organisation


@dataclass(frozen=True)
class Action:
    """One step of a rule: ``kind`` (move, forward, …) and its validated options."""

    kind: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


DEFAULT_FOLDERS = ("inbox",)
DEFAULT_WEBHOOK_TIMEOUT = 10.0  # s per attempt; a SOAR endpoint slower than this is treated as down
DEFAULT_WEBHOOK_BACKOFF = (5, 30, 120, 600, 1800)  # s between attempts; the last is ~35 min after the first
DEFAULT_MAX_CONTENT_BYTES = 1024 * 1024  # bytes of attachment content per event when include_content is on


@dataclass(frozen=True)
class MailboxWatch:
    """A mailbox and the folders whose new mail graphhook subscribes to."""

    address: str
    folders: tuple[str, ...] = DEFAULT_FOLDERS


@dataclass(frozen=True)
class Rule:
    """A named condition and the actions to run when it matches, in order."""

    name: str
    when: Condition
    actions: tuple[Action, ...] = ()
    stop: bool = False
    dry_run: bool = False
    description: str = ""


@dataclass(frozen=True)
class WebhookConfig:
    """An outbound webhook; ``secret`` is read from the environment variable ``secret_env``."""

    name: str
    url: str
    secret_env: str
    secret: str = field(default="", repr=False)
    format: str = "graphhook"
    timeout: float = DEFAULT_WEBHOOK_TIMEOUT
    backoff: tuple[int, ...] = DEFAULT_WEBHOOK_BACKOFF
    include_content: bool = False
    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES
    all_mail: bool = False


@dataclass(frozen=True)
class HandlerConfig:
    """A Python handler: a dotted path (``pkg.mod:func``) or a ``graphhook.handlers`` entry point."""

    name: str
    path: str = ""
    entry_point: str = ""
    all_mail: bool = False


@dataclass(frozen=True)
class App:
    """An app registration: its client id and where its credential is (environment variable names)."""

    name: str
    client_id: str
    secret: str = field(default="", repr=False)
    certificate_path: str = ""
    certificate_password: str = field(default="", repr=False)


@dataclass(frozen=True)
class Tenant:
    """One customer tenant: its directory id, the app it is reached with, what is watched and what fires."""

    name: str
    tenant_id: str
    app: App | None  # None: the environment's app (AZURE_CLIENT_ID and its credential)
    mailboxes: tuple[MailboxWatch, ...] = ()
    rules: tuple[str, ...] | None = None  # None: every rule
    webhooks: tuple[str, ...] | None = None  # None: every webhook
    alert_sender: str = ""  # alerts.from of this tenant: the sender of its alerts that name none

    def settings(self, base: Settings) -> Settings:
        """``base`` with this tenant's directory id and app credential."""
        if self.app is None:
            return base.replace(tenant=self.name, tenant_id=self.tenant_id)
        return base.replace(tenant=self.name, tenant_id=self.tenant_id, client_id=self.app.client_id,
                            client_secret=self.app.secret, client_certificate_path=self.app.certificate_path,
                            client_certificate_password=self.app.certificate_password)


@dataclass(frozen=True)
class Config:
    """The whole configuration file, validated."""

    path: str = ""
    mailboxes: tuple[MailboxWatch, ...] = ()
    organisation: Organisation = Organisation()
    rules: tuple[Rule, ...] = ()
    webhooks: Mapping[str, WebhookConfig] = field(default_factory=lambda: MappingProxyType({}))
    handlers: Mapping[str, HandlerConfig] = field(default_factory=lambda: MappingProxyType({}))
    alert_sender: str = ""
    tenants: tuple[Tenant, ...] = ()  # empty: one tenant, "default", from the environment (workers/triggers/tenants.py)


EMPTY = Config()
