"""Per-process resources for jobs: settings, Redis, token provider and Graph client, built once.

RQ runs jobs as plain functions, so they reach these through :func:`context`.
The worker entry point builds the context before forking, and each forked job
reuses the pooled objects it inherits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import redis

from receiver.redisconn import connect
from receiver.settings import Settings

from .auth import TokenProvider
from .graph import GraphClient


@dataclass
class Context:
    settings: Settings
    redis: redis.Redis
    tokens: TokenProvider
    graph: GraphClient


_context: Context | None = None
_pid: int | None = None


def build(settings: Settings, redis_client: redis.Redis | None = None) -> Context:
    """Build the process context from settings (entry points call this once)."""
    r = redis_client or connect(settings)
    tokens = TokenProvider(settings, r)
    return Context(settings, r, tokens, GraphClient(settings.graph_url, tokens.token))


def install(ctx: Context) -> None:
    global _context, _pid
    _context, _pid = ctx, os.getpid()


def context() -> Context:
    """The process context; built from the environment on first use."""
    global _context
    if _context is None:
        install(build(Settings.from_env()))
    assert _context is not None
    return _context
