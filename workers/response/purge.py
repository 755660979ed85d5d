"""Search-and-purge: find every copy of a message across mailboxes and remove it, resumably.

Microsoft's limits shape the engine (https://learn.microsoft.com/purview/ediscovery-search-and-delete-messages):

- at most **10 items** are removed per mailbox at a time: each mailbox is
  worked in *rounds* — search, remove up to 10, search again — until a
  search finds nothing left to remove (25 copies: 3 rounds);
- at most **50,000 mailboxes** in one purge: a larger purge is refused
  before any message is searched or removed.

Mailboxes run concurrently (``concurrency`` threads); Graph's own limit of
4 concurrent requests per app and mailbox is enforced by the Graph client's
limiter, and 429/503/504 are retried by the client honouring ``Retry-After``
(https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits).

State lives in Redis under a purge id so an interrupted purge can be resumed
without removing anything twice. Each removal is recorded *before* the Graph
call (``pending``) and *after* it (``removed`` or ``failed: why``). A resumed
purge first settles every ``pending`` removal — a message already gone answers
404, and a soft removal that happened is found in Deleted Items (ids are
immutable, so a moved message keeps its id: :mod:`workers.graph.preferences`);
both count as removed — and never sends a removal for a message already
marked ``removed``.

Keys (all expire after :data:`STATE_TTL`)::

    graphhook:purge:{id}                hash: spec, created, status, total
    graphhook:purge:{id}:mailboxes      list: the mailboxes, in order
    graphhook:purge:{id}:reports        hash: mailbox -> JSON MailboxReport once it is settled
    graphhook:purge:{id}:msgs:{mailbox} hash: message id -> pending | removed | failed: why
    graphhook:purge:{id}:lock           the process running it (one at a time)

A purge belongs to one tenant: a named tenant's keys start ``graphhook:t:{tenant}:purge:{id}``
(the ``default`` tenant's keep the names above), so a purge of one tenant never reads another's state.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import json
import logging
import math
import os
import secrets
import socket
import threading
from typing import Callable, Iterable

import redis

from graphhook.core import keys
from graphhook.core.errors import ConfigError, GraphError, NotFoundError
from graphhook.core.settings import DEFAULT_TENANT
from workers.graph.client import GraphClient
from workers.graph.mailbox import message_path
from workers.response import mailops
from workers.response.purge_model import (  # noqa: F401  (re-exported: the engine's public vocabulary)
    MAX_MAILBOXES,
    MODES,
    ROUND_SIZE,
    SETTLED,
    MailboxReport,
    PurgeResult,
    PurgeSpec,
    check_mailbox_count,
    normalise_mailboxes,
)
from workers.response.search import folder_id, iter_messages

log = logging.getLogger("graphhook.purge")

DEFAULT_CONCURRENCY = 8  # mailboxes worked at once (the HTTP pool holds 16 connections)
PER_MAILBOX = 4  # removals in flight per mailbox: Graph's 4 concurrent requests per app and mailbox
STATE_TTL = 30 * 24 * 3600  # s a purge's state (and so its report and --resume) is kept
LOCK_TTL = 60  # s; the running process refreshes it, a crashed one's lock lapses
PREFIX = "graphhook:purge"


def key(purge_id: str, *parts: str, tenant: str = DEFAULT_TENANT) -> str:
    """A Redis key of one purge of ``tenant``."""
    prefix = PREFIX if tenant == DEFAULT_TENANT else f"{keys.tenant_prefix(tenant)}:purge"
    return ":".join((prefix, purge_id, *parts))


class Purge:
    """One purge: its spec, its mailboxes and its state in Redis. Build with :meth:`create` or :meth:`load`."""

    def __init__(self, graph: GraphClient, r: redis.Redis, purge_id: str, spec: PurgeSpec,
                 mailboxes: list[str], *, tenant: str = DEFAULT_TENANT) -> None:
        self.graph, self.redis, self.id, self.spec, self.mailboxes = graph, r, purge_id, spec, mailboxes
        self.tenant = tenant  # graph must be this tenant's client (workers.runtime.Context.for_tenant)
        self.stop = threading.Event()  # set it to stop after the removals in flight
        self._lock = threading.Lock()
        self._progress: dict[str, int] = {}
        self._lock_value = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    # --- state ----------------------------------------------------------------------------------
    @classmethod
    def create(cls, graph: GraphClient, r: redis.Redis, spec: PurgeSpec, mailboxes: Iterable[str], *,
               tenant: str = DEFAULT_TENANT) -> "Purge":
        """Check the mailbox count and save a new purge of ``tenant``; nothing is searched or removed yet."""
        boxes = normalise_mailboxes(mailboxes)
        check_mailbox_count(len(boxes))
        purge_id = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        purge = cls(graph, r, purge_id, spec, boxes, tenant=tenant)
        pipe = r.pipeline()
        pipe.hset(purge._key(), mapping={"spec": json.dumps(spec.to_dict()), "status": "created", "total": len(boxes),
                                         "created": dt.datetime.now(dt.timezone.utc).isoformat()})
        for start in range(0, len(boxes), 1000):
            pipe.rpush(purge._key("mailboxes"), *boxes[start:start + 1000])
        pipe.expire(purge._key(), STATE_TTL)
        pipe.expire(purge._key("mailboxes"), STATE_TTL)
        pipe.execute()
        return purge

    @classmethod
    def load(cls, graph: GraphClient, r: redis.Redis, purge_id: str, *, tenant: str = DEFAULT_TENANT) -> "Purge":
        """A saved purge of ``tenant``, to resume it or read its report; ConfigError if unknown or expired."""
        raw = r.hget(key(purge_id, tenant=tenant), "spec")
        if raw is None:
            raise ConfigError(f"no purge {purge_id!r} of tenant {tenant!r} in Redis (unknown id, started in "
                              f"another tenant, or its state expired after {STATE_TTL // 86400} days)")
        boxes = [b.decode() for b in r.lrange(key(purge_id, "mailboxes", tenant=tenant), 0, -1)]
        return cls(graph, r, purge_id, PurgeSpec.from_dict(json.loads(raw)), boxes, tenant=tenant)

    def _key(self, *parts: str) -> str:
        return key(self.id, *parts, tenant=self.tenant)

    @property
    def status(self) -> str:
        """created | running | interrupted | done | partial."""
        return (self.redis.hget(self._key(), "status") or b"").decode()

    def _set_status(self, status: str) -> None:
        self.redis.hset(self._key(), "status", status)

    def reports(self) -> list[MailboxReport]:
        """The saved report of every mailbox (``pending`` for those not settled yet)."""
        saved = self.redis.hgetall(self._key("reports"))
        out = []
        for box in self.mailboxes:
            raw = saved.get(box.encode())
            out.append(MailboxReport(**json.loads(raw)) if raw else MailboxReport(box))
        return out

    def _with_partial_counts(self, reports: list[MailboxReport]) -> list[MailboxReport]:
        """Fill in what was already done in mailboxes not settled yet (an interrupted run's report)."""
        pending = [r for r in reports if r.status == "pending"]
        pipe = self.redis.pipeline()
        for report in pending:
            pipe.hvals(self._key("msgs", report.mailbox))
        for report, states in zip(pending, pipe.execute()):
            report.found = len(states)
            report.removed = sum(1 for s in states if s == b"removed")
            report.failed = sum(1 for s in states if s.startswith(b"failed"))
        return reports

    def _save_report(self, report: MailboxReport) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(self._key("reports"), report.mailbox, json.dumps(report.to_dict()))
        pipe.expire(self._key("reports"), STATE_TTL)
        pipe.execute()

    def _acquire(self) -> None:
        """Take the run lock; a lock left by a dead process on this host is taken over."""
        lock = self._key("lock")
        if self.redis.set(lock, self._lock_value, nx=True, ex=LOCK_TTL):
            return
        holder = (self.redis.get(lock) or b"").decode()
        host, _, rest = holder.partition(":")
        pid = rest.partition(":")[0]
        if host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid)):
            self.redis.set(lock, self._lock_value, ex=LOCK_TTL)
            return
        raise ConfigError(f"purge {self.id} is being run by another process ({host} pid {pid}); "
                          f"wait for it, or retry after {LOCK_TTL}s if that process died")

    def _refresh(self) -> None:
        self.redis.set(self._key("lock"), self._lock_value, ex=LOCK_TTL)

    def _release(self) -> None:
        lock = self._key("lock")
        if (self.redis.get(lock) or b"").decode() == self._lock_value:
            self.redis.delete(lock)

    # --- running ----------------------------------------------------------------------------------
    def run(self, *, concurrency: int = DEFAULT_CONCURRENCY,
            on_progress: Callable[[dict[str, int]], None] | None = None) -> PurgeResult:
        """Work every mailbox not yet settled; return the report. Safe to call again after an interruption."""
        self._acquire()
        self._set_status("running")
        reports = {r.mailbox: r for r in self.reports()}
        todo = [b for b in self.mailboxes if reports[b].status not in SETTLED]
        self._progress = {"total": len(self.mailboxes), "done": len(self.mailboxes) - len(todo),
                          "found": sum(r.found for r in reports.values() if r.status in SETTLED),
                          "removed": sum(r.removed for r in reports.values() if r.status in SETTLED), "failed": 0}
        notify = on_progress or (lambda snapshot: None)
        notify(dict(self._progress))
        workers = max(1, concurrency)
        pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="purge")
        queue, pending = iter(todo), set()

        def fill() -> None:  # a short queue: 50,000 futures waited on one by one would cost O(n²)
            while len(pending) < 2 * workers and not self.stop.is_set():
                box = next(queue, None)
                if box is None:
                    return
                pending.add(pool.submit(self._work, box))

        try:
            fill()
            while pending:
                finished, pending = cf.wait(pending, timeout=min(LOCK_TTL / 4, 5.0),
                                            return_when=cf.FIRST_COMPLETED)
                self._refresh()
                for future in finished:
                    if future.result().status != "pending":
                        self._count(done=1)
                    notify(dict(self._progress))
                fill()
        except KeyboardInterrupt:
            self.stop.set()  # the removals in flight finish and are recorded; the rest waits for --resume
        except BaseException:
            self.stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            interrupted = self.stop.is_set()
            final = self._with_partial_counts(self.reports())
            result = PurgeResult(self.id, self.spec, final, interrupted=interrupted)
            self._set_status("interrupted" if interrupted else "done" if result.ok else "partial")
            self._release()
        return result

    def _work(self, mailbox: str) -> MailboxReport:
        """Work one mailbox; a failure of the mailbox as a whole is reported, never raised."""
        report = MailboxReport(mailbox)
        if self.stop.is_set():
            return report
        try:
            self._mailbox(mailbox, report)
        except GraphError as exc:
            report.why.append(_why(exc))
        except _Stopped:
            return report  # pending: the next run continues it
        self._settle(report)
        self._save_report(report)
        return report

    def _settle(self, report: MailboxReport) -> None:
        states = self.redis.hgetall(self._key("msgs", report.mailbox))
        if not self.spec.dry_run:
            report.found = len(states)
            report.removed = sum(1 for s in states.values() if s == b"removed")
            report.failed = sum(1 for s in states.values() if s.startswith(b"failed"))
            report.why = list(dict.fromkeys(report.why + [s.decode()[len("failed: "):] for s in states.values()
                                                          if s.startswith(b"failed")]))
        if report.why and not report.failed and not report.removed and not report.found:
            report.status = "failed"
        elif report.failed or report.why:
            report.status = "partial" if report.removed else "failed"
        elif self.spec.dry_run:
            report.status = "would remove" if report.found else "clean"
        else:
            report.status = "removed" if report.removed else "clean"

    def _mailbox(self, mailbox: str, report: MailboxReport) -> None:
        msgs = self._key("msgs", mailbox)
        query = self.spec.query
        if self.spec.dry_run:
            found = list(iter_messages(self.graph, mailbox, query, select=("id",)))
            if found and self.spec.mode == "soft":  # a soft purge leaves the copies already in Deleted Items
                deleted_items = folder_id(self.graph, mailbox, "deleteditems")
                found = [m for m in found if m.get("parentFolderId") != deleted_items]
            report.messages = [{"id": m["id"], "subject": m.get("subject"), "receivedDateTime":
                                m.get("receivedDateTime")} for m in found]
            report.found = len(found)
            report.rounds = math.ceil(report.found / ROUND_SIZE)
            self._count(found=report.found)
            return
        states = {k.decode(): v.decode() for k, v in self.redis.hgetall(msgs).items()}
        # Removals an interrupted run left pending are settled first: those that happened count as removed,
        # the others are sent again.
        settled = [mid for mid, state in states.items() if state == "pending" and self._happened(mailbox, mid)]
        if settled:
            self.redis.hset(msgs, mapping=dict.fromkeys(settled, "removed"))
            self._count(removed=len(settled))
            states.update(dict.fromkeys(settled, "removed"))
        handled = {mid for mid, state in states.items() if state == "removed"}
        left = [mid for mid, state in states.items() if state == "pending" or state.startswith("failed")]
        for start in range(0, len(left), ROUND_SIZE):
            self._round(mailbox, left[start:start + ROUND_SIZE], report)
            handled.update(left[start:start + ROUND_SIZE])
        deleted_items: str | None = None
        while True:
            if self.stop.is_set():
                raise _Stopped()
            batch, exhausted = [], True
            for message in iter_messages(self.graph, mailbox, query, select=("id", "parentFolderId")):
                # A search paged while its results move can list a message twice; its immutable id still
                # works after the move, so a second removal would act twice: never the same id twice.
                if message["id"] in handled or message["id"] in batch or message.get("parentFolderId") == deleted_items:
                    continue
                if self.spec.mode == "soft" and deleted_items is None:
                    # Copies already in Deleted Items are where a soft purge would put them: leave them.
                    deleted_items = folder_id(self.graph, mailbox, "deleteditems")
                    query = query.excluding(deleted_items)
                    if message.get("parentFolderId") == deleted_items:
                        continue
                batch.append(message["id"])
                if len(batch) == ROUND_SIZE:
                    exhausted = False
                    break
            if not batch:
                return
            new = [mid for mid in batch if mid not in states]
            self._count(found=len(new))
            self._round(mailbox, batch, report)
            handled.update(batch)
            states.update(dict.fromkeys(new, "seen"))
            if exhausted:
                return  # that search saw every match (all pages): searching again would find none

    def _round(self, mailbox: str, ids: list[str], report: MailboxReport) -> None:
        """Remove up to 10 messages of one mailbox (4 at a time, Graph's per-mailbox concurrency)."""
        report.rounds += 1
        msgs = self._key("msgs", mailbox)
        pipe = self.redis.pipeline()
        pipe.hset(msgs, mapping=dict.fromkeys(ids, "pending"))  # before: a crash now leaves them pending
        pipe.expire(msgs, STATE_TTL)
        pipe.execute()
        with cf.ThreadPoolExecutor(max_workers=min(PER_MAILBOX, len(ids))) as pool:
            outcomes = list(pool.map(lambda mid: self._remove(mailbox, mid), ids))
        self.redis.hset(msgs, mapping=dict(zip(ids, outcomes)))  # after
        self._count(removed=sum(1 for o in outcomes if o == "removed"),
                    failed=sum(1 for o in outcomes if o != "removed"))

    def _happened(self, mailbox: str, message_id: str) -> bool:
        """Whether a removal left ``pending`` took place: the message is gone, or (soft) already in Deleted Items."""
        try:
            message = self.graph.get(message_path(mailbox, message_id), params={"$select": "parentFolderId"})
        except NotFoundError:
            return True
        except GraphError:
            return False
        return self.spec.mode == "soft" and message.get("parentFolderId") == folder_id(self.graph, mailbox, "deleteditems")

    def _remove(self, mailbox: str, message_id: str) -> str:
        """Remove one message with the shared implementation (:func:`workers.response.mailops.delete`)."""
        try:
            mailops.delete(self.graph, mailbox, message_id, mode=self.spec.mode)
        except NotFoundError:
            return "removed"  # already gone: removed by an earlier run (or by the user)
        except GraphError as exc:
            log.warning("purge %s: could not remove a message in %s: %s", self.id, mailbox, _why(exc))
            return f"failed: {_why(exc)}"
        return "removed"

    def _count(self, **changes: int) -> None:
        with self._lock:
            for name, value in changes.items():
                self._progress[name] = self._progress.get(name, 0) + value


class _Stopped(Exception):
    """Raised inside a mailbox's work when the purge is being stopped."""


def _why(exc: GraphError) -> str:
    """A short reason for the report: status, Graph's code and message (never a URL with a query)."""
    return f"{exc.status} {exc.code}: {exc.graph_message}".strip()[:300]


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host still runs; a zombie (exited, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return not os.path.isdir("/proc")  # no /proc here (not Linux): kill() said it exists
    except OSError:
        return True
