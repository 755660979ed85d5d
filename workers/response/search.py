"""Finding messages and mailboxes on Microsoft Graph: one query value, every page followed.

The CLI (``graphhook mail search``), the purge engine and anything else that
looks for mail build a :class:`MessageQuery` and call :func:`iter_messages`;
:func:`iter_mailboxes` lists the tenant's mailboxes. The pure part (turning a
query into ``$filter`` / ``$search`` options) is separate from the I/O so it
can be read and tested on its own.

- ``$filter`` on messages (https://learn.microsoft.com/graph/api/user-list-messages)
  takes ``internetMessageId eq``, ``from/emailAddress/address eq``,
  ``subject eq``, ``contains(subject,…)``, ``receivedDateTime ge|lt``, joined
  with ``and``; string literals double their single quotes (OData ABNF).
- Message bodies, a sender's domain and recipients can only be searched with
  ``$search`` (KQL ``body:``, ``from:``, ``recipients:``; the whole value in
  double quotes: ``"body:invoice AND from:fabrikam.com"``): Graph refuses
  ``endswith`` on addresses (ErrorInvalidUrlQueryFilter), refuses to combine
  ``$search`` with ``$filter``, and caps ``$search`` at 1,000 results
  (https://learn.microsoft.com/graph/search-query-parameter). KQL matches
  words, so every criterion — the body phrase too, on the text body — is
  checked again here on each result before it is returned.
- Collections are paged: every ``@odata.nextLink`` is followed
  (:meth:`workers.graph.client.GraphClient.paged`) so nothing is silently capped
  at the first page; ``limit`` stops early only when asked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import quote

from graphhook.core.errors import ConfigError
from workers.graph.client import GraphClient
from workers.graph.mailbox import message_path, resolve_folder, user_path

PAGE_SIZE = 100  # messages per page we ask for; Graph's default is 10, its maximum 1,000
USER_PAGE_SIZE = 999  # users per page: the maximum of GET /users (https://learn.microsoft.com/graph/api/user-list)
SEARCH_CAP = 1000  # "$search … returns up to 1,000 results" for messages
SUMMARY_FIELDS = ("id", "internetMessageId", "subject", "from", "receivedDateTime", "parentFolderId",
                  "isRead", "hasAttachments")
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DOMAIN = re.compile(r"(?:[a-z0-9-]+\.)+[a-z0-9-]{2,63}", re.IGNORECASE)
_ADDRESS = re.compile(r"[^@\s]+@(?:[a-z0-9-]+\.)*[a-z0-9-]+", re.IGNORECASE)
RECIPIENT_FIELDS = ("toRecipients", "ccRecipients", "bccRecipients")


def parse_when(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """A moment from ``24h``/``7d`` (that long ago) or an ISO 8601 date or time (UTC if no offset)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    match = _DURATION.fullmatch(text or "")
    if match:
        return now - dt.timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        moment = dt.datetime.fromisoformat((text or "").strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"time must be a duration such as 24h or 7d, or an ISO date such as 2026-11-27 "
                          f"or 2026-11-27T08:00:00Z, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _literal(text: str) -> str:
    """An OData string literal: single quotes doubled."""
    return "'" + text.replace("'", "''") + "'"


def _kql(prop: str, text: str) -> list[str]:
    """``prop:word`` for each word: no inner quotes, so the whole ``$search`` value can be quoted as Graph wants."""
    return [f"{prop}:{word}" for word in re.findall(r"[^\s\"():\\]+", text)]


def _squash(text: str) -> str:
    return " ".join(text.lower().split())


def _text(body: Any) -> str:
    """The text of a Graph itemBody (tags dropped from HTML, should Graph not honour the text preference)."""
    content = str((body or {}).get("content") or "")
    if str((body or {}).get("contentType") or "").lower() == "html":
        content = html.unescape(re.sub(r"<[^>]+>", " ", content))
    return content


@dataclass(frozen=True)
class MessageQuery:
    """What to look for. Every given criterion must match; an empty query matches every message."""

    internet_message_id: str | None = None
    sender: str | None = None  # the From address, or a domain (``fabrikam.com``; ``*@fabrikam.com`` accepted)
    subject: str | None = None  # the whole subject (case-insensitive, as Exchange compares)
    subject_contains: str | None = None
    body: str | None = None  # words or a phrase in the body ($search)
    since: dt.datetime | None = None  # received at or after
    until: dt.datetime | None = None  # received before
    exclude_folder_ids: tuple[str, ...] = field(default=())
    recipient: str | None = None  # an address in To, Cc or Bcc

    def __post_init__(self) -> None:
        for name in ("internet_message_id", "sender", "subject", "subject_contains", "body", "recipient"):
            value = getattr(self, name)
            if value is not None and not str(value).strip():
                raise ConfigError(f"{name.replace('_', ' ')} must not be empty, got {value!r}")
        if self.sender is not None:
            sender = self.sender.strip()
            if sender.startswith(("*@", "@")):
                sender = sender.split("@", 1)[1]
            if not (_ADDRESS.fullmatch(sender) or _DOMAIN.fullmatch(sender)):
                raise ConfigError(f"--from takes a full address (ceo@fabrikam.com) or a domain (fabrikam.com), "
                                  f"got {self.sender!r}")
            object.__setattr__(self, "sender", sender.lower())
        if self.recipient is not None:
            if not _ADDRESS.fullmatch(self.recipient.strip()):
                raise ConfigError(f"--to takes a full address such as bob@contoso.com, got {self.recipient!r}")
            object.__setattr__(self, "recipient", self.recipient.strip().lower())
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ConfigError(f"{name} must carry a time zone, got {value!r}")
        if self.since and self.until and self.since >= self.until:
            raise ConfigError(f"since ({_iso(self.since)}) must be before until ({_iso(self.until)})")

    @property
    def selective(self) -> bool:
        """True when the query names a message, a sender, a subject or body text (not just a time window)."""
        return any((self.internet_message_id, self.sender, self.subject, self.subject_contains, self.body,
                    self.recipient))

    @property
    def sender_domain(self) -> str | None:
        """The domain when ``sender`` names a domain rather than one address."""
        return self.sender if self.sender and "@" not in self.sender else None

    @property
    def uses_search(self) -> bool:
        """True when Graph can only answer this with ``$search`` (body text, a sender domain, a recipient)."""
        return bool(self.body is not None or self.sender_domain or self.recipient)

    def excluding(self, *folder_ids: str) -> "MessageQuery":
        """The same query, leaving out messages in these folders."""
        extra = tuple(f for f in folder_ids if f not in self.exclude_folder_ids)
        return dataclasses.replace(self, exclude_folder_ids=self.exclude_folder_ids + extra)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (times as ISO strings), for reports and saved purge state."""
        out: dict[str, Any] = {"internet_message_id": self.internet_message_id, "sender": self.sender,
                               "subject": self.subject, "subject_contains": self.subject_contains, "body": self.body,
                               "since": _iso(self.since) if self.since else None,
                               "until": _iso(self.until) if self.until else None}
        if self.recipient:
            out["recipient"] = self.recipient
        if self.exclude_folder_ids:
            out["exclude_folder_ids"] = list(self.exclude_folder_ids)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MessageQuery":
        """Inverse of :meth:`to_dict`."""
        return cls(internet_message_id=data.get("internet_message_id"), sender=data.get("sender"),
                   subject=data.get("subject"), subject_contains=data.get("subject_contains"), body=data.get("body"),
                   since=parse_when(data["since"]) if data.get("since") else None,
                   until=parse_when(data["until"]) if data.get("until") else None,
                   exclude_folder_ids=tuple(data.get("exclude_folder_ids") or ()),
                   recipient=data.get("recipient"))

    # --- Graph query options (pure) ----------------------------------------------------------
    def params(self) -> dict[str, str]:
        """``$filter`` or ``$search`` for this query (``$search`` when a body term is given)."""
        if self.uses_search:
            terms = _kql("body", self.body or "") + _kql("from", self.sender or "")
            terms += _kql("recipients", self.recipient or "")
            for text in (self.subject, self.subject_contains):
                terms += _kql("subject", text or "")
            return {"$search": '"' + " AND ".join(terms) + '"'}
        clauses = []
        if self.since:
            clauses.append(f"receivedDateTime ge {_iso(self.since)}")
        if self.until:
            clauses.append(f"receivedDateTime lt {_iso(self.until)}")
        if self.internet_message_id:
            clauses.append(f"internetMessageId eq {_literal(self.internet_message_id)}")
        if self.sender:
            clauses.append(f"from/emailAddress/address eq {_literal(self.sender)}")
        if self.subject:
            clauses.append(f"subject eq {_literal(self.subject)}")
        if self.subject_contains:
            clauses.append(f"contains(subject,{_literal(self.subject_contains)})")
        clauses += [f"parentFolderId ne {_literal(f)}" for f in self.exclude_folder_ids]
        return {"$filter": " and ".join(clauses)} if clauses else {}

    def matches(self, message: dict[str, Any]) -> bool:
        """Check a returned message against every criterion (Graph's $search is fuzzy; this is exact)."""
        def low(value: Any) -> str:
            return str(value or "").lower()

        if self.internet_message_id and message.get("internetMessageId") != self.internet_message_id:
            return False
        sender = low(((message.get("from") or {}).get("emailAddress") or {}).get("address"))
        domain = self.sender_domain
        if domain and not (sender.endswith("@" + domain) or sender.endswith("." + domain)):
            return False
        if self.sender and not domain and sender != self.sender:
            return False
        if self.recipient and self.recipient not in {
                low((r.get("emailAddress") or {}).get("address")) for f in RECIPIENT_FIELDS for r in message.get(f) or []}:
            return False
        if self.subject and low(message.get("subject")) != low(self.subject):
            return False
        if self.subject_contains and low(self.subject_contains) not in low(message.get("subject")):
            return False
        if self.body and _squash(self.body) not in _squash(_text(message.get("body"))):
            return False
        received = message.get("receivedDateTime")
        if (self.since or self.until) and received:
            moment = parse_when(str(received))
            if (self.since and moment < self.since) or (self.until and moment >= self.until):
                return False
        return message.get("parentFolderId") not in self.exclude_folder_ids


# --- I/O ------------------------------------------------------------------------------------------

def iter_messages(client: GraphClient, mailbox: str, query: MessageQuery, *, folder: str | None = None,
                  select: tuple[str, ...] = SUMMARY_FIELDS, limit: int | None = None,
                  page_size: int = PAGE_SIZE) -> Iterator[dict[str, Any]]:
    """Messages of ``mailbox`` (or one of its folders) matching ``query``, following every page.

    Lists ``/users/{mailbox}/messages`` (all mail folders, not Recoverable Items) or
    ``/users/{mailbox}/mailFolders/{id}/messages``. ``limit`` stops after that many.
    """
    base = user_path(mailbox)
    if folder:
        base = f"{base}/mailFolders/{quote(resolve_folder(client, mailbox, folder), safe='')}"
    wanted = set(select) | {"id", "internetMessageId", "subject", "from", "receivedDateTime", "parentFolderId"}
    if query.recipient:
        wanted.update(RECIPIENT_FIELDS)
    headers = None
    if query.body:  # the phrase is checked on the text body (KQL matched words, maybe not in that order)
        wanted.add("body")
        headers = {"Prefer": 'outlook.body-content-type="text"'}
    params = {**query.params(), "$select": ",".join(sorted(wanted)), "$top": str(page_size)}
    found = (m for m in client.paged(f"{base}/messages", params=params, headers=headers) if query.matches(m))
    yield from found if limit is None else itertools.islice(found, limit)


def get_message(client: GraphClient, mailbox: str, message_id: str, *, body_type: str = "text",
                select: tuple[str, ...] | None = None) -> dict[str, Any]:
    """One message (https://learn.microsoft.com/graph/api/message-get), its body as ``text`` or ``html``."""
    if body_type not in ("text", "html"):
        raise ConfigError(f"body type must be text or html, got {body_type!r}")
    params = {"$select": ",".join(select)} if select else None
    return client.get(message_path(mailbox, message_id), params=params,
                      headers={"Prefer": f'outlook.body-content-type="{body_type}"'})


def folder_id(client: GraphClient, mailbox: str, folder: str) -> str:
    """The real id of a folder given by well-known name or path (``deleteditems`` → ``AAMk…``)."""
    ref = resolve_folder(client, mailbox, folder)
    if ref != folder.lower():  # resolve_folder returned a looked-up id
        return ref
    return client.get(f"{user_path(mailbox)}/mailFolders/{quote(ref, safe='')}", params={"$select": "id"})["id"]


def iter_mailboxes(client: GraphClient, *, limit: int | None = None, page_size: int = USER_PAGE_SIZE) -> Iterator[str]:
    """Every mailbox address in the tenant (``GET /users``, all pages); users without mail are skipped.

    Needs User.Read.All (https://learn.microsoft.com/graph/api/user-list). ``limit`` stops early.
    """
    users = client.paged("users", params={"$select": "id,mail,userPrincipalName", "$top": str(page_size)})
    addresses = (str(u["mail"]) for u in users if u.get("mail"))
    yield from addresses if limit is None else itertools.islice(addresses, limit)


def outside_directory(client: GraphClient, addresses: list[str], *, concurrency: int = 8,
                      page_size: int = USER_PAGE_SIZE) -> dict[str, str]:
    """The addresses that are not users of the client's tenant, each with why; empty when all are.

    ``GET /users/{address}`` with the tenant's token (https://learn.microsoft.com/graph/api/user-get)
    answers 404 for another tenant's mailbox — the same answer as for a typo — so a purge checks before
    acting. One that could not be checked (any other error) is listed too: a purge must not guess.
    A long list is first matched against the tenant's user list (``GET /users``, ``page_size`` a page,
    at most one page per ten addresses), so 50,000 addresses cost a few pages, not 50,000 requests;
    only the addresses that list does not show (aliases, strangers) are looked up one by one.
    """
    import concurrent.futures as cf

    from graphhook.core.errors import GraphError, NotFoundError

    def why(address: str) -> str:
        try:
            client.get(user_path(address), params={"$select": "id"})
        except NotFoundError:
            return "not in this tenant's directory"
        except GraphError as exc:
            return f"could not be checked: {exc.status} {exc.code}".strip()
        return ""

    left = {a.lower(): a for a in addresses}
    if len(left) > page_size:
        users = client.paged("users", params={"$select": "id,mail,userPrincipalName", "$top": str(page_size)})
        for seen, user in enumerate(users, 1):
            for known in (user.get("mail"), user.get("userPrincipalName")):
                left.pop(str(known or "").lower(), None)
            if not left or seen >= page_size * max(1, len(addresses) // 10):
                break
    unsure = list(left.values())
    if not unsure:
        return {}
    with cf.ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(unsure))),
                               thread_name_prefix="directory") as pool:
        answers = list(pool.map(why, unsure))
    return {address: reason for address, reason in zip(unsure, answers) if reason}
