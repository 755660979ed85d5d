"""Trigger dispatch: given a complete email record, fire every configured trigger.

This is the single seam between fetching (``workers.jobs``) and acting. Order:
rules are evaluated (pure, microseconds), the built-in ``record`` trigger
fires with the names of the matching rules, then all-mail webhooks and
handlers run and each matching rule's actions run in order. An action
failure never fails the fetch job (whose retry would refetch a message that
may already have moved): the rules are re-run by a ``workers.triggers.engine.resume``
job with back-off, and idempotency markers skip what already happened.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from workers import metrics
from workers.runtime import Context
from workers.triggers import engine
from workers.triggers.config import tenant_config

log = logging.getLogger("graphhook.dispatch")


def dispatch(ctx: Context, record: dict[str, Any], *, subscription_id: str = "", notified_at: float | None = None) -> int:
    """Fire the triggers for one email record; return how many fired (the record trigger plus matched rules)."""
    config = tenant_config(ctx.settings)  # this tenant's rules and webhooks, no other's
    matched = engine.evaluate(config, record)
    # Once per email even if the job is retried after this point (its actions have their own markers).
    first = engine.record(ctx.redis, {
        "trigger": "record", "subscriptionId": subscription_id, "tenant": ctx.tenant,
        "email": record, "notifiedAt": notified_at or time.time(),
        "rules": [r.name for r in matched], "dryRun": [r.name for r in matched if r.dry_run],
    }, events_file=ctx.settings.events_file, once_seconds=ctx.settings.dedupe_seconds,
        once_key=f"{engine.RECORDED}:{str(record.get('mailbox') or '').lower()}:{record.get('id')}")
    if first:  # a retried dispatch counts nothing twice
        for rule in matched:
            ctx.redis.hincrby(engine.RULE_STATS, rule.name, 1)
            log.info("rule %r matched message %s in %s%s", rule.name, str(record.get("id"))[:16],
                     record.get("mailbox"), " (dry-run)" if rule.dry_run else "")
        metrics.triggers_fired([r.name for r in matched], notified_at=notified_at, tenant=ctx.tenant)
    outcome = engine.run(ctx, config, record, matched, subscription_id=subscription_id)
    if outcome.failed:
        job_id = engine.schedule_resume(ctx, record, [r.name for r in matched], subscription_id=subscription_id,
                                        tenant=ctx.tenant)
        log.warning("actions failed for message %s (%s); retrying in job %s", str(record.get("id"))[:16],
                    ", ".join(outcome.failed), job_id)
    return 1 + len(matched)
