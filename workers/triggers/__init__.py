"""Triggers: the YAML configuration, rule conditions, and what fires on a record (actions, webhooks, handlers)."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # "workers.triggers.resume": the dotted name of rule-resume jobs queued before jobs moved to workers.jobs.
    if name == "resume":
        from workers.jobs import resume_rules

        return resume_rules
    raise AttributeError(f"module 'workers.triggers' has no attribute {name!r}")
