"""Everything RQ runs, and the renewer: one sub-package per concept.

- :mod:`workers.jobs` — every RQ entry point, by the dotted name stored with the job
- :mod:`workers.graph` — the Microsoft Graph client: session, tokens, politeness, uploads, mailbox paths
- :mod:`workers.records` — a Graph message turned into graphhook's email record
- :mod:`workers.triggers` — the configuration, rules, actions, webhooks and handlers
- :mod:`workers.subscriptions` — subscriptions kept alive, lifecycle events, delta resync
- :mod:`workers.response` — incident response: search, mailbox operations, purge
- :mod:`workers.check` — ``graphhook check``
- :mod:`workers.runtime`, :mod:`workers.pool`, :mod:`workers.metrics` — per-process resources, the worker
  process model and worker-side metrics
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

# Dotted names of jobs queued by graphhook before its jobs moved to workers.jobs. RQ resolves
# "workers.webhooks.deliver" as attribute "webhooks" of this package, then "deliver"; answering
# here lets such jobs run after an upgrade that finds them still queued.
_LEGACY_JOBS = {"webhooks": ("deliver", "deliver_webhook"), "resync": ("resync_job", "resync_folder")}


def __getattr__(name: str) -> Any:
    if name in _LEGACY_JOBS:
        from workers import jobs

        old, new = _LEGACY_JOBS[name]
        return SimpleNamespace(**{old: getattr(jobs, new)})
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
