"""Per-process resources for jobs: settings, Redis, token provider and Graph client, built once.

RQ runs jobs as plain functions, so they reach these through :func:`context`.
The worker entry point builds the context once per process; with the
non-forking worker model (:func:`run_pool`) every job of that process reuses
the same pooled HTTP session, the same in-memory token and the same Redis
connection pool.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import redis

from graphhook.core.redisconn import connect
from graphhook.core.settings import Settings
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


_context: Context | None = None
_pid: int | None = None


def build(settings: Settings, redis_client: redis.Redis | None = None) -> Context:
    """Build the process context from settings (entry points call this once)."""
    r = redis_client or connect(settings)
    # One keep-alive pool per process, for the identity platform and Graph, with a connection per job thread.
    session = new_session(pool_size=max(16, settings.worker_concurrency))
    tokens = TokenProvider(settings, r, session=session)
    limiter = MailboxLimiter(r, concurrency=settings.mailbox_concurrency, budget=settings.mailbox_budget,
                             slot_seconds=float(settings.mailbox_slot_seconds))
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
