"""Per-process resources for jobs: settings, Redis, token provider and Graph client, built once.

RQ runs jobs as plain functions, so they reach these through :func:`context`.
The worker entry point builds the context once per process; with the
non-forking worker model (:func:`run_pool`) every job of that process reuses
the same pooled HTTP session, the same in-memory token and the same Redis
connection pool.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import redis

from graphhook.core.redisconn import connect
from graphhook.core.settings import DEFAULT_TENANT, Settings
from workers.graph.auth import TokenProvider
from workers.graph.client import GraphClient, new_session
from workers.graph.limits import MailboxLimiter


@dataclass
class Context:
    """What a job needs: settings, Redis, tokens and the Graph client of this process."""

    settings: Settings
    redis: redis.Redis
    tokens: TokenProvider
    graph: GraphClient
    _family: "_Family | None" = field(default=None, repr=False)

    @property
    def tenant(self) -> str:
        """The name of the tenant this context acts in (``default`` without ``tenants:``)."""
        return self.settings.tenant

    def for_tenant(self, name: str) -> "Context":
        """The context of tenant ``name``: its token provider and Graph client, sharing this one's Redis,
        HTTP pool and mailbox limiter. Built on first use, and again when the configuration changes that
        tenant's directory or app. KeyError for a tenant not configured."""
        from workers.triggers.config import config_for
        from workers.triggers.tenants import tenant_named

        name = name or DEFAULT_TENANT
        family = self._family or _Family(self.settings, {self.settings.tenant: self})
        self._family = family
        config = config_for(self.settings.config_path)
        if name == self.settings.tenant and (not config.tenants or name == DEFAULT_TENANT):
            return self
        found = family.members.get(name)
        if found is not None and family.checked.get(name) is config:
            return found  # the hot path: checked against this very configuration already
        wanted = tenant_named(config, family.base, name).settings(family.base)
        with family.lock:
            found = family.members.get(name)
            if found is None or found.settings != wanted:
                found = family.members[name] = _build(wanted, self.redis, self.graph.session, self.graph.limiter)
                found._family = family
            family.checked[name] = config
            return found

    @property
    def base(self) -> Settings:
        """The environment's settings, from which every tenant's are derived (``Tenant.settings(ctx.base)``)."""
        return self._family.base if self._family else self.settings

    def sibling(self, settings: Settings) -> "Context":
        """A new context acting with ``settings`` (another tenant, another app), sharing this one's Redis, HTTP
        pool, mailbox limiter and family; not cached: the renewer keeps its own per tenant, and drops one whose
        token was refused (with MSAL's in-memory cache), and reaches tenants no longer configured with it."""
        found = _build(settings, self.redis, self.graph.session, self.graph.limiter)
        found._family = self._family
        return found


@dataclass
class _Family:
    """The contexts of one process, one per tenant, and the environment's settings they are derived from."""

    base: Settings
    members: dict[str, Context]
    lock: threading.Lock = field(default_factory=threading.Lock)
    checked: dict[str, Any] = field(default_factory=dict)  # tenant → the loaded configuration its member matches


_context: Context | None = None
_pid: int | None = None


def build(settings: Settings, redis_client: redis.Redis | None = None) -> Context:
    """Build the process context from settings (entry points call this once)."""
    base, settings = settings, _acting(settings)
    r = redis_client or connect(settings)
    # One keep-alive pool per process, for the identity platform and Graph, with a connection per job thread.
    session = new_session(pool_size=max(16, settings.worker_concurrency))
    limiter = MailboxLimiter(r, concurrency=settings.mailbox_concurrency, budget=settings.mailbox_budget,
                             slot_seconds=float(settings.mailbox_slot_seconds))
    ctx = _build(settings, r, session, limiter)
    ctx._family = _Family(base, {settings.tenant: ctx})
    return ctx


def require_graph(settings: Settings) -> None:
    """ConfigError naming what is missing to call Graph, counting an app named by the configuration's tenants."""
    _acting(settings).require_graph()


def _acting(settings: Settings) -> Settings:
    """The settings a process acts with by default: the environment's app, or, when the environment names no
    tenant or app and the configuration declares ``tenants:`` (one app per customer), the first tenant's."""
    if settings.tenant_id and settings.client_id and (settings.client_secret or settings.client_certificate_path):
        return settings
    from workers.triggers.config import config_for

    config = config_for(settings.config_path)
    return config.tenants[0].settings(settings) if config.tenants else settings


def _build(settings: Settings, r: redis.Redis, session: Any, limiter: MailboxLimiter | None) -> Context:
    tokens = TokenProvider(settings, r, session=session)
    graph = GraphClient(settings.graph_url, tokens.token, session=session, limiter=limiter,
                        retry_budget=float(settings.graph_retry_seconds), on_unauthorized=tokens.invalidate)
    return Context(settings, r, tokens, graph)


def install(ctx: Context) -> None:
    """Make ``ctx`` the context of this process."""
    global _context, _pid
    _context, _pid = ctx, os.getpid()


def context() -> Context:
    """The process context; built from the environment on first use (and again in a forked child)."""
    if _context is None:
        install(build(Settings.from_env()))
    elif _pid != os.getpid():
        # A forked child (RQ's default Worker) must not reuse the parent's TLS connections: drop them
        # (closing our copies sends nothing to the peer). Redis pools reset themselves after a fork.
        _context.graph.session.close()
        install(_context)
    assert _context is not None
    return _context
