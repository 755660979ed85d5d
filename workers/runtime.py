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
    _tenants: dict[str, "Context"] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def tenant(self) -> str:
        """The name of the tenant this context acts in (``default`` without ``tenants:``)."""
        return self.settings.tenant

    def for_tenant(self, name: str) -> "Context":
        """The context of tenant ``name``: its token provider and Graph client, sharing this one's Redis,
        HTTP pool and mailbox limiter; built once per process. KeyError for a tenant not configured."""
        from workers.triggers.config import config_for
        from workers.triggers.tenants import tenant_named

        name = name or DEFAULT_TENANT
        if name == self.settings.tenant:
            return self
        with self._lock:
            found = self._tenants.get(name)
            if found is None:
                tenant = tenant_named(config_for(self.settings.config_path), self.settings, name)
                found = self._tenants[name] = _build(tenant.settings(self.settings), self.redis, self.graph.session,
                                                     self.graph.limiter)
                found._tenants = self._tenants  # one family: any member reaches every tenant
                found._lock = self._lock
                self._tenants.setdefault(self.settings.tenant, self)
            return found


_context: Context | None = None
_pid: int | None = None


def build(settings: Settings, redis_client: redis.Redis | None = None) -> Context:
    """Build the process context from settings (entry points call this once)."""
    settings = _acting(settings)
    r = redis_client or connect(settings)
    # One keep-alive pool per process, for the identity platform and Graph, with a connection per job thread.
    session = new_session(pool_size=max(16, settings.worker_concurrency))
    limiter = MailboxLimiter(r, concurrency=settings.mailbox_concurrency, budget=settings.mailbox_budget,
                             slot_seconds=float(settings.mailbox_slot_seconds))
    return _build(settings, r, session, limiter)


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
