"""OData query options as Outlook's Graph endpoints apply them: ``$filter``, ``$search``, ``$orderby``.

Pure functions over resource dicts; errors are :class:`QueryError` carrying
Graph's code and message, which the HTTP layer turns into a 400.

- ``$filter``: ``eq ne gt ge lt le``, ``and or not``, parentheses,
  ``contains/startswith/endswith(prop,'text')``, lambda ``any`` over
  collections (``toRecipients/any(r:r/emailAddress/address eq 'x')``,
  ``categories/any(c:c eq 'Red')``). String comparisons ignore case, as
  Exchange does. An unknown property is a 400, as Graph answers.
- ``$search`` (https://learn.microsoft.com/graph/search-query-parameter):
  KQL-ish terms, implicitly ANDed, ``OR`` between terms, quoted phrases, and
  the properties ``from to cc bcc participants recipients subject body
  attachment hasAttachments importance received sent``; bare words match
  from, subject and body (the documented default properties).
- ``$orderby`` with ``$filter``: the ordered properties must lead the filter,
  in the same order, else Graph answers ``InefficientFilter``
  (https://learn.microsoft.com/graph/api/user-list-messages#using-filter-and-orderby-in-the-same-query).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Callable

Predicate = Callable[[dict[str, Any]], bool]


class QueryError(ValueError):
    """A query option Graph would reject with 400 ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>'(?:[^']|'')*')
    | (?P<punct>[(),:])
    | (?P<num>-?\d[\w:.+\-]*)
    | (?P<word>[A-Za-z_@$][\w/.@$\-]*)
    )""", re.VERBOSE)
_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCS = {"contains", "startswith", "endswith"}


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise QueryError("BadRequest", f"Invalid filter clause: syntax error at position {pos} in '{text}'.")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def parse_time(value: str) -> dt.datetime:
    """ISO 8601 with ``Z`` or an offset, up to 7 fractional digits; a bare date means midnight UTC."""
    text = re.sub(r"(\.\d{1,6})\d*", r"\1", value.strip())
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        text += "T00:00:00"
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)


def resolve(obj: Any, path: str, env: dict[str, Any] | None = None) -> Any:
    """Walk ``a/b/c`` through dicts case-insensitively; a lambda variable may start the path."""
    parts = path.split("/")
    if env and parts[0] in env:
        obj, parts = env[parts[0]], parts[1:]
    for part in parts:
        if not isinstance(obj, dict):
            return None
        key = next((k for k in obj if k.lower() == part.lower()), None)
        obj = obj.get(key) if key is not None else None
    return obj


@dataclass
class Filter:
    """A parsed ``$filter``: the predicate and the top-level properties in the order they appear."""

    predicate: Predicate
    properties: list[str]

    def __call__(self, resource: dict[str, Any]) -> bool:
        return self.predicate(resource)


class _Parser:
    def __init__(self, text: str, known: set[str] | None, entity: str) -> None:
        self.text, self.tokens, self.pos = text, _tokens(text), 0
        self.known, self.entity = known, entity
        self.properties: list[str] = []
        self.vars: list[str] = []

    def peek(self, offset: int = 0) -> tuple[str, str]:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else ("eof", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if value is not None and token[1].lower() != value:
            raise QueryError("BadRequest", f"Invalid filter clause: expected '{value}' in '{self.text}'.")
        self.pos += 1
        return token

    def parse(self) -> Predicate:
        predicate = self.or_expr()
        if self.peek()[0] != "eof":
            raise QueryError("BadRequest", f"Invalid filter clause: unexpected '{self.peek()[1]}' in '{self.text}'.")
        return predicate

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.peek()[1].lower() == "or":
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda r, e=None, ps=parts: any(p(r, e) for p in ps))

    def and_expr(self) -> Predicate:
        parts = [self.unary()]
        while self.peek()[1].lower() == "and":
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda r, e=None, ps=parts: all(p(r, e) for p in ps))

    def unary(self) -> Predicate:
        if self.peek()[1].lower() == "not":
            self.take()
            inner = self.unary()
            return lambda r, e=None: not inner(r, e)
        if self.peek()[1] == "(":
            self.take()
            inner = self.or_expr()
            self.take(")")
            return inner
        kind, word = self.take()
        if kind != "word":
            raise QueryError("BadRequest", f"Invalid filter clause: unexpected '{word}' in '{self.text}'.")
        if word.lower() in _FUNCS and self.peek()[1] == "(":
            return self.function(word.lower())
        if word.lower().endswith(("/any", "/all")) and self.peek()[1] == "(":
            return self.lambda_(word)
        self.property(word)
        op = self.take()[1].lower()
        if op not in _OPS:
            raise QueryError("BadRequest", f"Invalid filter clause: unknown operator '{op}' in '{self.text}'.")
        literal = self.literal()
        return lambda r, e=None: _compare(resolve(r, word, e), op, literal)

    def property(self, path: str) -> None:
        head = path.split("/")[0]
        if head in self.vars:
            return
        if self.known is not None and head.lower() not in self.known:
            raise QueryError("BadRequest", f"Could not find a property named '{head}' on type '{self.entity}'.")
        if head.lower() not in (p.lower() for p in self.properties):
            self.properties.append(head)

    def literal(self) -> Any:
        kind, value = self.take()
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if kind == "num":
            if re.match(r"\d{4}-\d{2}-\d{2}", value):
                try:
                    return parse_time(value)
                except ValueError as exc:
                    raise QueryError("BadRequest", f"The DateTimeOffset text '{value}' is not valid.") from exc
            return float(value)
        low = value.lower()
        if low in ("true", "false"):
            return low == "true"
        if low == "null":
            return None
        raise QueryError("BadRequest", f"Invalid filter clause: bad literal '{value}' in '{self.text}'.")

    def function(self, name: str) -> Predicate:
        self.take("(")
        path = self.take()[1]
        self.property(path)
        self.take(",")
        needle = str(self.literal()).lower()
        self.take(")")
        test = {"contains": str.__contains__, "startswith": str.startswith, "endswith": str.endswith}[name]
        return lambda r, e=None: test(str(resolve(r, path, e) or "").lower(), needle)

    def lambda_(self, word: str) -> Predicate:
        path, _, quantifier = word.rpartition("/")
        self.property(path)
        self.take("(")
        var = self.take()[1]
        self.take(":")
        self.vars.append(var)
        inner = self.or_expr()
        self.vars.pop()
        self.take(")")
        combine = any if quantifier.lower() == "any" else all

        def test(r: dict[str, Any], e: dict[str, Any] | None = None) -> bool:
            items = resolve(r, path, e) or []
            return combine(inner(r, {**(e or {}), var: item}) for item in items)

        return test


def _compare(value: Any, op: str, literal: Any) -> bool:
    if isinstance(literal, dt.datetime):
        if not value:
            return False
        value = parse_time(str(value))
    elif isinstance(literal, str):
        value = None if value is None else str(value).lower()
        literal = literal.lower()
    elif isinstance(literal, float) and value is not None:
        value = float(value)
    if op == "eq":
        return value == literal
    if op == "ne":
        return value != literal
    if value is None or literal is None:
        return False
    return {"gt": value > literal, "ge": value >= literal, "lt": value < literal, "le": value <= literal}[op]


def parse_filter(text: str, known: set[str] | None = None, entity: str = "Microsoft.OutlookServices.Message") -> Filter:
    """Parse ``$filter``; ``known`` (lower-case names) makes unknown properties a 400."""
    parser = _Parser(text, known, entity)
    predicate = parser.parse()
    return Filter(lambda r: bool(predicate(r, None)), parser.properties)


def parse_orderby(text: str) -> list[tuple[str, bool]]:
    """``receivedDateTime desc,subject`` → ``[("receivedDateTime", True), ("subject", False)]``."""
    out = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise QueryError("BadRequest", f"Invalid $orderby clause '{text}'.")
        out.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return out


def check_orderby_with_filter(orderby: list[tuple[str, bool]], flt: Filter) -> None:
    """Graph's rule for $orderby together with $filter on messages."""
    wanted = [p.lower() for p, _ in orderby]
    if [p.lower() for p in flt.properties[:len(wanted)]] != wanted:
        raise QueryError("InefficientFilter", "The restriction or sort order is too complex for this operation.")


def sort(items: list[dict[str, Any]], orderby: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    """Stable multi-key sort; missing values sort first."""
    for path, desc in reversed(orderby):
        items = sorted(items, key=lambda r, p=path: _sort_key(resolve(r, p)), reverse=desc)
    return items


def _sort_key(value: Any) -> tuple:
    if value is None:
        return (0, "")
    if isinstance(value, (bool, int, float)):
        return (1, value)
    return (2, str(value).lower())


# --- $search ----------------------------------------------------------------------------------
_KQL = re.compile(r'\s*(?:(?P<prop>[A-Za-z]+):(?:"(?P<pq>[^"]*)"|(?P<pv>[^\s()"]+))|"(?P<phrase>[^"]*)"|(?P<word>[^\s()"]+))')
_ADDRESS_FIELDS = {
    "from": ("from",), "to": ("toRecipients",), "cc": ("ccRecipients",), "bcc": ("bccRecipients",),
    "recipients": ("toRecipients", "ccRecipients", "bccRecipients"),
    "participants": ("from", "toRecipients", "ccRecipients", "bccRecipients"),
}


def _addresses(message: dict[str, Any], fields: tuple[str, ...]) -> list[str]:
    out = []
    for name in fields:
        value = message.get(name)
        for entry in value if isinstance(value, list) else [value] if value else []:
            email = entry.get("emailAddress", {})
            out += [str(email.get("address", "")).lower(), str(email.get("name", "")).lower()]
    return out


def _term(prop: str | None, value: str) -> Predicate:
    needle = value.lower()
    if prop is None:
        return lambda m: (needle in str(m.get("subject", "")).lower() or needle in str(m.get("body", {}).get("content", "")).lower()
                          or any(needle in a for a in _addresses(m, ("from",))))
    prop = prop.lower()
    if prop in _ADDRESS_FIELDS:
        fields = _ADDRESS_FIELDS[prop]
        return lambda m: any(needle in a for a in _addresses(m, fields))
    if prop == "subject":
        return lambda m: needle in str(m.get("subject", "")).lower()
    if prop == "body":
        return lambda m: needle in str(m.get("body", {}).get("content", "")).lower()
    if prop == "attachment":
        return lambda m: any(needle in str(a.get("name", "")).lower() for a in m.get("attachments", []))
    if prop in ("hasattachment", "hasattachments"):
        return lambda m: bool(m.get("hasAttachments")) == (needle == "true")
    if prop == "importance":
        return lambda m: str(m.get("importance", "")).lower() == needle
    if prop in ("received", "sent"):
        key = "receivedDateTime" if prop == "received" else "sentDateTime"
        try:
            day = dt.datetime.strptime(value, "%m/%d/%Y").date() if "/" in value else parse_time(value).date()
        except ValueError as exc:
            raise QueryError("BadRequest", f"Invalid $search date '{value}'.") from exc
        return lambda m: bool(m.get(key)) and parse_time(m[key]).date() == day
    raise QueryError("BadRequest", f"Unsupported $search property '{prop}'.")


def parse_search(text: str) -> Predicate:
    """A KQL-ish ``$search`` string (surrounding double quotes optional) → predicate over messages."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"' and text.count('"') == 2:
        text = text[1:-1]
    groups: list[list[Predicate]] = [[]]
    pos = 0
    while pos < len(text):
        match = _KQL.match(text, pos)
        if not match or match.end() == pos:
            break
        pos = match.end()
        if match.group("word") in ("OR",):
            groups.append([])
            continue
        if match.group("word") == "AND":
            continue
        if match.group("prop"):
            groups[-1].append(_term(match.group("prop"), match.group("pq") if match.group("pq") is not None else match.group("pv")))
        else:
            groups[-1].append(_term(None, match.group("phrase") if match.group("phrase") is not None else match.group("word")))
    groups = [g for g in groups if g]
    if not groups:
        raise QueryError("BadRequest", "The $search query is empty.")
    return lambda m: any(all(t(m) for t in g) for g in groups)
