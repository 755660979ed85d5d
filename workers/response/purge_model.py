"""The values of a search-and-purge: what to remove and how, what happened per mailbox, Microsoft's limits.

Pure: no Redis, no HTTP. The engine that uses them is :mod:`workers.response.purge`.
Limits from https://learn.microsoft.com/purview/ediscovery-search-and-delete-messages.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable

from graphhook.core.errors import ConfigError
from workers.response.search import MessageQuery

MAX_MAILBOXES = 50_000  # Microsoft: a search-and-purge covers at most 50,000 mailboxes
ROUND_SIZE = 10  # Microsoft: at most 10 items removed per mailbox at a time
MODES = ("soft", "hard")  # soft: to Deleted Items; hard: Graph's DELETE (to Recoverable Items)
SETTLED = ("clean", "removed", "would remove")  # a mailbox in these states is not worked again on resume


@dataclass(frozen=True)
class PurgeSpec:
    """What a purge removes and how."""

    query: MessageQuery
    mode: str = "soft"
    dry_run: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"purge mode must be one of {MODES}, got {self.mode!r}")
        if not self.query.selective:
            raise ConfigError("a purge needs an internetMessageId, a sender, a subject or body text "
                              "(a time window alone would remove every message in it)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"query": self.query.to_dict(), "mode": self.mode, "dry_run": self.dry_run}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PurgeSpec":
        """Inverse of :meth:`to_dict`."""
        return cls(MessageQuery.from_dict(data["query"]), data.get("mode", "soft"), bool(data.get("dry_run")))


@dataclass
class MailboxReport:
    """What happened in one mailbox: found, removed, failed (with why), in how many rounds."""

    mailbox: str
    status: str = "pending"  # pending | clean | removed | would remove | partial | failed
    found: int = 0
    removed: int = 0
    failed: int = 0
    rounds: int = 0
    why: list[str] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)  # dry run: what would go (id, subject, received)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


@dataclass
class PurgeResult:
    """The outcome of a purge run (or of the part that ran before an interruption)."""

    purge_id: str
    spec: PurgeSpec
    mailboxes: list[MailboxReport]
    interrupted: bool = False

    @property
    def totals(self) -> dict[str, int]:
        """Sums over the mailboxes, and how many mailboxes ended in each status."""
        out = {"mailboxes": len(self.mailboxes), "found": 0, "removed": 0, "failed": 0}
        for r in self.mailboxes:
            out["found"] += r.found
            out["removed"] += r.removed
            out["failed"] += r.failed
        for status in ("clean", "removed", "would remove", "partial", "failed", "pending"):
            out[f"mailboxes_{status.replace(' ', '_')}"] = sum(1 for r in self.mailboxes if r.status == status)
        return out

    @property
    def ok(self) -> bool:
        """True when every mailbox was settled without a failure."""
        return not self.interrupted and all(r.status in SETTLED for r in self.mailboxes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report."""
        out = {"purge_id": self.purge_id, **self.spec.to_dict(), "interrupted": self.interrupted,
               "totals": self.totals,
               "mailboxes": [{k: v for k, v in r.to_dict().items() if k != "messages"} for r in self.mailboxes]}
        if self.spec.dry_run:
            out["messages"] = [{"mailbox": r.mailbox, **m} for r in self.mailboxes for m in r.messages]
        return out


def normalise_mailboxes(items: Iterable[str]) -> list[str]:
    """Strip, drop blanks and ``#`` comments, lower-case and de-duplicate (first occurrence wins)."""
    out: dict[str, None] = {}
    for item in items:
        text = item.split("#", 1)[0].strip().lower()
        if text:
            out.setdefault(text, None)
    return list(out)


def check_mailbox_count(count: int) -> None:
    """Refuse a purge over Microsoft's 50,000-mailbox limit, before any work."""
    if count > MAX_MAILBOXES:
        shown = f"more than {MAX_MAILBOXES:,}" if count == MAX_MAILBOXES + 1 else f"{count:,}"
        raise ConfigError(f"refusing to purge {shown} mailboxes: Microsoft allows at most {MAX_MAILBOXES:,} "
                          f"mailboxes in one purge; split the mailboxes into several purges")
    if count == 0:
        raise ConfigError("no mailboxes to purge")
