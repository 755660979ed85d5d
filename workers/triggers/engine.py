"""Triggers: the built-in ``record`` trigger, rule evaluation, and running what matched.

``record`` appends each email event to the Redis list ``graphhook:events`` (and
a JSON-lines file when ``GRAPHHOOK_EVENTS_FILE`` is set), so the demo and tests
can see it; the event names the rules that matched. Rules are evaluated in
order; a matching rule with ``stop: true`` ends evaluation. Webhooks and
handlers marked ``all_mail`` run for every email. When an action fails, the
remaining work is queued as :func:`resume` with back-off; markers make the
re-run skip what was already done.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import redis

from graphhook.core import keys
from graphhook.core.errors import ActionError
from workers.triggers.model import Action, Config, Rule

log = logging.getLogger("graphhook.triggers")

RULE_STATS = "graphhook:rules:stats"  # hash: rule name → messages it matched
RECORDED = "graphhook:recorded"  # prefix: <mailbox>:<message id> once its record event is in graphhook:events
RESUME_BACKOFF = (10, 60, 300, 900, 3600)  # s between attempts of a failed rule run


# SET the once-marker and RPUSH the event together, or neither: a retried job records nothing twice.
_RECORD_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[2])) then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


def record(r: redis.Redis, event: dict[str, Any], *, events_file: str = "", once_key: str = "",
           once_seconds: int = 0) -> bool:
    """Persist one trigger event: RPUSH to ``graphhook:events`` and append to the events file.

    With ``once_key`` the event is recorded only if that key was not set in the last
    ``once_seconds`` (atomically with the RPUSH); returns whether it was recorded.
    """
    event = {**event, "firedAt": time.time()}
    line = json.dumps(event, separators=(",", ":"), sort_keys=True)
    if once_key:
        if not r.eval(_RECORD_ONCE, 2, once_key, keys.EVENTS, line, max(1, once_seconds)):
            return False
    else:
        r.rpush(keys.EVENTS, line)
    if events_file:
        with open(events_file, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    return True


def evaluate(config: Config, email: Mapping[str, Any]) -> list[Rule]:
    """The rules that match ``email``, in order, stopping after a matching rule with ``stop``."""
    matched: list[Rule] = []
    for rule in config.rules:
        if rule.when(email):
            matched.append(rule)
            if rule.stop:
                break
    return matched


@dataclass
class Outcome:
    """What running the triggers did: per-rule outcomes and whether anything failed."""

    done: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def run(ctx: Any, config: Config, email: Mapping[str, Any], rules: list[Rule], *,
        subscription_id: str = "", all_mail: bool = True) -> Outcome:
    """Run all-mail webhooks and handlers, then each matched rule's actions; failures are collected, not raised."""
    from workers.triggers.actions import Runner

    runner = Runner(ctx, config, email, subscription_id=subscription_id)
    outcome = Outcome()
    steps: list[tuple[str, Any]] = []
    if all_mail:
        steps += [(f"all:webhook:{h.name}", Action("webhook", {"name": h.name})) for h in config.webhooks.values() if h.all_mail]
        steps += [(f"all:handler:{h.name}", Action("handler", {"name": h.name})) for h in config.handlers.values() if h.all_mail]
    for scope, action in steps:
        try:
            outcome.done[scope] = [runner.perform(scope, "0", action)]
        except Exception as exc:
            outcome.failed[scope] = _why(exc)
            log.warning("%s failed for message %s: %s", scope, runner.original_id[:16], _why(exc))
    for rule in rules:
        try:
            outcome.done[rule.name] = runner.run_rule(rule)
        except Exception as exc:
            outcome.failed[rule.name] = _why(exc)
            log.warning("rule %r failed for message %s in %s: %s", rule.name, runner.original_id[:16],
                        runner.mailbox, _why(exc))
    return outcome


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def schedule_resume(ctx: Any, email: Mapping[str, Any], rule_names: list[str], *, subscription_id: str = "",
                    tenant: str = "") -> str:
    """Queue :func:`resume` for the given rules, retried with back-off; return the job id."""
    from rq import Retry

    from graphhook.core import jobformat

    job = jobformat.queue(ctx.settings.queue_name, ctx.redis).enqueue(
        "workers.jobs.resume_rules", dict(email), rule_names, subscription_id, tenant or ctx.settings.tenant,
        at_front=True,  # ahead of fetches
        retry=Retry(max=len(RESUME_BACKOFF), interval=list(RESUME_BACKOFF), enqueue_at_front=True),
        description=f"resume rules {', '.join(rule_names)} for {email.get('mailbox')}")
    return job.id


def resume(email: dict[str, Any], rule_names: list[str], subscription_id: str = "",
           tenant: str = "") -> dict[str, list[str]]:
    """Re-run rules (and all-mail triggers) for an email after a failure (the ``workers.jobs.resume_rules`` job),
    in the tenant it was received in."""
    from workers.runtime import context
    from workers.triggers.config import tenant_config

    ctx = context().for_tenant(tenant)
    config = tenant_config(ctx.settings)
    by_name = {r.name: r for r in config.rules}
    rules = [by_name[n] for n in rule_names if n in by_name]
    outcome = run(ctx, config, email, rules, subscription_id=subscription_id)
    if outcome.failed:
        raise ActionError("; ".join(f"{k}: {v}" for k, v in outcome.failed.items()))
    return outcome.done


def summarise(events: list[dict[str, Any]]) -> list[str]:
    """Lines for a summary: each rule that fired and on which messages (from ``record`` events)."""
    fired: dict[str, list[str]] = {}
    for event in events:
        for name in event.get("rules") or []:
            suffix = " (dry-run)" if name in (event.get("dryRun") or []) else ""
            fired.setdefault(name + suffix, []).append(str((event.get("email") or {}).get("subject") or ""))
    return [f"{name}: {len(subjects)} message(s): " + ", ".join(repr(s) for s in subjects[:5])
            + (", …" if len(subjects) > 5 else "") for name, subjects in fired.items()]
