"""Fixtures for worker tests: a Graph client and fetcher wired to the emulator and real Redis."""

from __future__ import annotations

import pytest

from workers import runtime


@pytest.fixture
def ctx(settings, redis_client):
    """A worker context (token provider, limiter, Graph client) against the emulator."""
    context = runtime.build(settings, redis_client)
    yield context
    context.graph.session.close()
