"""Rule actions, run once each even when the job that runs them is retried.

Every action (of a rule, or taken by a handler through its API) has a Redis
marker keyed by mailbox, original message id, rule (or handler), step and
action kind. The marker is claimed with ``SET NX`` as ``pending`` *before* the
side effect and set to ``done`` (with a moved message's new id) right after.

What happens when a job dies between the side effect and ``done`` — the marker
stays ``pending`` and the retry finds it:

* actions a person would notice twice (forward, reply, alert, copy, handler)
  are **not repeated**: at most once. A crash in that window may lose one of
  them; the retry logs it at WARNING, so the loss is visible.
* a webhook's side effect here is queueing its delivery job, and that job is
  created in the same MULTI/EXEC that sets the marker to ``done``: a
  ``pending`` marker proves nothing was queued, so the retry queues it. (The
  delivery job itself is at-least-once, deduplicated by its event id.)
* idempotent actions (mark read, categorise, flag, hard delete, purge) are
  simply done again.
* move and soft delete are repeated; if the message is no longer at its old
  id, it is found again in the destination folder by its Internet Message-ID.

A failure Graph answered (4xx/5xx after the client's throttling retries)
releases the marker so the retry can try again; a lost connection during a
send-like action keeps it ``pending`` (the send may have happened).
"""

from __future__ import annotations

import copy
import logging
import string
from typing import Any, Mapping

from graphhook.core.errors import GraphError, NotFoundError
from workers.response import mailops
from workers.triggers import webhooks
from workers.triggers.handlers import HandlerAPI, resolve
from workers.triggers.model import Action, Config, Rule

log = logging.getLogger("graphhook.actions")

MARKER_PREFIX = "graphhook:action"
MARKER_TTL = 14 * 24 * 3600  # s; well beyond any job retry schedule and Graph's 4 h notification retries
AT_MOST_ONCE = {"forward", "reply", "alert", "copy", "handler"}
MOVES = {"move", "delete"}


def marker_key(mailbox: str, message_id: str, scope: str, step: str, kind: str) -> str:
    """The idempotency marker of one action on one message."""
    return f"{MARKER_PREFIX}:{mailbox.lower()}:{message_id}:{scope}:{step}:{kind}"


def nothing_happened(kind: str, exc: BaseException) -> bool:
    """Whether a failed action certainly had no effect, so a retry may run it again.

    Graph answering with an error status is certain; a lost connection, a job timeout or a
    worker shutdown in the middle of a send is not, and send-like actions then stay at most once.
    A handler or webhook enqueue that raised is retried (handler API calls have their own markers).
    """
    if kind not in AT_MOST_ONCE:
        return True
    if isinstance(exc, GraphError):
        return exc.status != 0
    return kind in ("handler", "webhook") and isinstance(exc, Exception)


def describe(action: Action) -> str:
    """A one-line human description for logs and dry-runs (no secrets live in actions)."""
    o = action.options
    return {
        "move": lambda: f"move to {o['folder']!r}",
        "copy": lambda: f"copy to {o['folder']!r}",
        "forward": lambda: f"forward to {', '.join(o['to'])}",
        "delete": lambda: f"delete ({o['mode']})",
        "mark_read": lambda: "mark read" if o["read"] else "mark unread",
        "categorise": lambda: f"categorise {', '.join(o['categories'])}",
        "flag": lambda: f"flag {o['status']}",
        "reply": lambda: "reply all" if o.get("all") else "reply",
        "alert": lambda: f"alert {', '.join(o['to'])} from {o['from'] or 'the tenant alerts.from'}",
        "webhook": lambda: f"webhook {o['name']}",
        "handler": lambda: f"handler {o['name']}",
    }.get(action.kind, lambda: action.kind)()


class Runner:
    """Runs actions against one message, tracking its current id as it moves."""

    def __init__(self, ctx: Any, config: Config, record: Mapping[str, Any], *, subscription_id: str = "") -> None:
        self.ctx = ctx
        self.config = config
        self.record = record
        self.subscription_id = subscription_id
        self.mailbox = str(record["mailbox"])
        self.original_id = str(record["id"])
        self.current_id = self.original_id
        self.outcomes: list[str] = []
        self._scope = ""
        self._marker = ""  # the marker of the action being performed (a webhook is queued together with it)

    def run_rule(self, rule: Rule) -> list[str]:
        """Run a matched rule's actions in order (or, for a dry-run rule, log what would happen)."""
        done: list[str] = []
        for step, action in enumerate(rule.actions):
            if rule.dry_run:
                text = f"dry-run: rule {rule.name!r} would {describe(action)} (message {self.original_id[:16]}… in {self.mailbox})"
                log.info(text)
                done.append(f"would {describe(action)}")
                continue
            done.append(self.perform(f"rule:{rule.name}", str(step), action, rule=rule.name))
        self.outcomes.extend(done)
        return done

    def perform(self, scope: str, step: str, action: Action, *, rule: str | None = None) -> str:
        """Run one action at most once per (message, scope, step); return what happened."""
        r = self.ctx.redis
        key = marker_key(self.mailbox, self.original_id, scope, step, action.kind)
        recovering = False
        if not r.set(key, "pending", nx=True, ex=MARKER_TTL):
            state = (r.get(key) or b"").decode()
            if state.startswith("done"):
                new_id = state.partition(":")[2]
                if new_id and action.kind in MOVES:
                    self.current_id = new_id
                return f"{describe(action)}: already done"
            if action.kind in AT_MOST_ONCE:
                log.warning("not repeating %s for message %s (%s step %s): an earlier attempt started it and "
                            "did not record the result", describe(action), self.original_id[:16], scope, step)
                return f"{describe(action)}: not repeated (earlier attempt interrupted)"
            recovering = True
        self._scope, self._marker = f"{scope}:{step}", key
        try:
            new_id = self._execute(action, rule, recovering=recovering)
        except BaseException as exc:
            if nothing_happened(action.kind, exc) and action.kind != "webhook":
                r.delete(key)  # a retry may try again (a webhook's marker already says: pending = not queued)
            raise
        r.set(key, f"done:{new_id}" if new_id else "done", ex=MARKER_TTL)
        if new_id and action.kind in MOVES:
            self.current_id = new_id
        log.info("%s: %s (message %s in %s)", scope, describe(action), self.original_id[:16], self.mailbox)
        return describe(action)

    # --- the side effects -------------------------------------------------------------------

    def _execute(self, action: Action, rule: str | None, *, recovering: bool) -> str | None:
        graph, o, mailbox = self.ctx.graph, action.options, self.mailbox
        kind = action.kind
        if kind in ("move", "delete") and (kind == "move" or o["mode"] == "soft"):
            folder = o["folder"] if kind == "move" else "deleteditems"
            try:
                return mailops.move(graph, mailbox, self.current_id, folder, create=o.get("create", True))
            except NotFoundError:
                if not recovering:
                    raise
                return self._find_moved(folder)
        if kind == "delete":
            mailops.delete(graph, mailbox, self.current_id, mode=o["mode"])
        elif kind == "copy":
            return mailops.copy(graph, mailbox, self.current_id, o["folder"], create=o.get("create", True))
        elif kind == "forward":
            mailops.forward(graph, mailbox, self.current_id, o["to"], self.fill(o.get("comment", ""), rule))
        elif kind == "reply":
            mailops.reply(graph, mailbox, self.current_id, self.fill(o.get("comment", ""), rule), reply_all=o.get("all", False))
        elif kind == "mark_read":
            mailops.mark_read(graph, mailbox, self.current_id, o["read"])
        elif kind == "categorise":
            mailops.categorise(graph, mailbox, self.current_id, o["categories"])
        elif kind == "flag":
            mailops.flag(graph, mailbox, self.current_id, o["status"])
        elif kind == "alert":
            # An alert that names no sender is sent from the tenant's alerts.from (a mailbox of the mail's tenant).
            sender = self.config.alert_sender if o.get("tenant_sender") and self.config.alert_sender else o["from"]
            mailops.send_mail(graph, sender, o["to"], self.fill(o["subject"], rule), self.fill(o["body"], rule))
        elif kind == "webhook":
            return self.send_webhook(o["name"], rule=rule, scope=self._scope)
        elif kind == "handler":
            self.call_handler(o["name"])
        else:
            raise ValueError(f"unknown action kind {kind!r}")
        return None

    def _find_moved(self, folder: str) -> str:
        """After an interrupted move: the message's id in the destination folder, by Internet Message-ID."""
        imid = str(self.record.get("internetMessageId") or "")
        found = mailops.find_by_internet_message_id(self.ctx.graph, self.mailbox, imid, folder=folder) if imid else []
        if not found:
            raise NotFoundError(404, "ErrorItemNotFound", "message moved or deleted by an earlier attempt and not found "
                                f"in {folder!r}", method="POST", url="move")
        return str(found[0]["id"])

    def send_webhook(self, name: str, *, rule: str | None, scope: str = "") -> str:
        """Queue a signed delivery of this email's event to webhook ``name``; return the job id."""
        event = webhooks.build_event(self.record, webhook=name, rule=rule, message_id=self.current_id,
                                     subscription_id=self.subscription_id, scope=scope, tenant=self.ctx.tenant)
        return webhooks.enqueue(self.ctx.redis, self.ctx.settings.queue_name, self.config.webhooks[name], event,
                                done_marker=(self._marker, MARKER_TTL) if self._marker else None)

    def call_handler(self, name: str) -> None:
        """Call Python handler ``name`` with a copy of the record and an action API."""
        function = resolve(self.config.handlers[name], path=self.config.path)
        email = copy.deepcopy(dict(self.record))
        email["id"] = self.current_id
        # The API's markers live under the calling step, so one handler used by two rules acts for each.
        function(email, HandlerAPI(self, name, scope=f"{self._scope}:handler:{name}"))

    def fill(self, template: str, rule: str | None) -> str:
        """Substitute ``$subject``, ``$sender``… (validated at load time) from the record."""
        sender = self.record.get("from") or self.record.get("sender") or {}
        values = {
            "subject": self.record.get("subject") or "", "sender": sender.get("address") or "",
            "sender_name": sender.get("name") or "", "mailbox": self.mailbox,
            "folder": self.record.get("folder") or "", "rule": rule or "",
            "received": self.record.get("receivedDateTime") or "", "weblink": self.record.get("webLink") or "",
            "id": self.current_id, "internet_message_id": self.record.get("internetMessageId") or "",
        }
        return string.Template(template).safe_substitute({k: str(v) for k, v in values.items()})
