"""Rule conditions: YAML condition specs compiled once, at load time, into pure predicates over the email record.

A condition is a mapping. Each key is one test; several keys in one mapping
must all hold. ``all`` / ``any`` take lists of conditions, ``not`` takes one.
Every regex is compiled here, with RE2 (:mod:`workers.triggers.patterns`), so a bad
pattern, or one RE2 cannot run in linear time, is a configuration error that names
the rule and the field, never a job failure. Matching is pure: no I/O.

Every text tested comes from the mail's sender. Each test costs at most a linear
pass over a bounded prefix of it (``patterns.FIELD_CHARS`` for subjects, names,
header values and URLs; ``patterns.BODY_CHARS`` for bodies); HTML is parsed once,
by the same linear parser as the record's (:func:`workers.records.urls.scan_html`).

Field names follow the email record (``workers/records/messages.py``, schema
``graphhook.email/1``); see docs/configuration.md for the full list of tests.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from graphhook.core.errors import ConfigError
from workers.records.urls import scan_html
from workers.triggers.patterns import BODY_CHARS, FIELD_CHARS, Pattern, compile_pattern

Record = Mapping[str, Any]
VERDICTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "bestguesspass")


@dataclass(frozen=True)
class Person:
    """An internal person whose display name attackers may borrow."""

    name: str
    address: str = ""


@dataclass(frozen=True)
class Organisation:
    """What counts as internal: domains (globs) and people, for impersonation checks."""

    domains: tuple[str, ...] = ()
    people: tuple[Person, ...] = ()

    def is_internal(self, address: str) -> bool:
        """True when the address's domain matches one of the internal domain globs."""
        return _glob_any(_domain(address), self.domains)


@dataclass(frozen=True)
class Condition:
    """A compiled condition: ``describe`` is the spec path for logs, ``test`` the predicate."""

    describe: str
    test: Callable[[Record], bool]

    def __call__(self, record: Record) -> bool:
        return bool(self.test(record))


ALWAYS = Condition("always", lambda record: True)


# --- helpers -----------------------------------------------------------------------------------

def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower() if "@" in (address or "") else ""


def _glob_any(value: str | None, patterns: Sequence[str]) -> bool:
    """Case-insensitive shell-style glob match (``*.example.net``, ``ceo@*``)."""
    value = (value or "").lower()
    return bool(value) and any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _normalise_name(name: str) -> str:
    """Casefold, drop punctuation and quotes, collapse whitespace: '"Smith, John"' ≈ 'john smith'."""
    words = re.findall(r"[^\W_]+", (name or "")[:FIELD_CHARS].casefold())  # one char class: linear
    return " ".join(sorted(words))


_DOMAIN_AFTER_AT = re.compile(r"@([\w.-]+)")  # no backtracking: a literal, then one greedy class


def _domains_in(text: str) -> Iterator[str]:
    r"""Domains of the ``local@domain`` strings in ``text``, in one pass.

    Replaces ``re.findall(r"[\w.+-]+@[\w.-]+", text)``, which retried the local part from every
    position of a long run of word characters: quadratic (5.6 s on a 40,000-character name).
    """
    for match in _DOMAIN_AFTER_AT.finditer(text):
        start = match.start()
        if start and (text[start - 1].isalnum() or text[start - 1] in "_.+-"):
            yield match.group(1)


def html_text(markup: str) -> str:
    """Visible text of an HTML body: one linear parse of its first characters (``urls.HTML_CHARS``)."""
    return " ".join(scan_html(markup or "")[1].split())


def addresses(record: Record, *keys: str) -> list[str]:
    """Lower-cased addresses of the given address fields (``from``, ``sender``, ``to``…)."""
    out: list[str] = []
    for key in keys:
        value = record.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Mapping) and item.get("address"):
                out.append(str(item["address"]).lower())
    return out


def iter_attachments(record: Record, nested: bool = True) -> Iterator[Mapping[str, Any]]:
    """Every attachment of the record, and (``nested``) of attached emails, depth first."""
    for attachment in record.get("attachments") or []:
        yield attachment
        inner = attachment.get("email")
        if nested and isinstance(inner, Mapping):
            yield from iter_attachments(inner, nested)


def body_text(record: Record) -> str:
    """The plain-text body: ``bodyText`` or the visible text of ``bodyHtml``."""
    if record.get("bodyText"):
        return str(record["bodyText"])
    return html_text(str(record.get("bodyHtml") or "")) or str(record.get("preview") or "")


# --- spec parsing ------------------------------------------------------------------------------

def _fail(field: str, message: str) -> ConfigError:
    return ConfigError(f"field {field}: {message}")


def _str_list(value: Any, field: str, lower: bool = True) -> tuple[str, ...]:
    """A string or a list of strings (non-empty)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise _fail(field, f"expected a string or a non-empty list of strings, got {value!r}")
    return tuple(v.strip().lower() if lower else v for v in items)


def _regex(value: Any, field: str, limit: int = FIELD_CHARS) -> Pattern:
    """Compile a regex with RE2, case-insensitive unless the pattern says ``(?-i)``; it sees ``limit`` characters."""
    return compile_pattern(value, field, limit)


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(field, f"expected true or false, got {value!r}")
    return value


def _size(value: Any, field: str) -> int:
    """Bytes, as a whole number or with a unit: 1024, '10 KB', '5MB' (1 KB = 1024 bytes)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([kmg]?)i?b?\s*", str(value), re.I) if isinstance(value, str) else None
    if not match:
        raise _fail(field, f"expected a size in bytes such as 1048576 or '1 MB', got {value!r}")
    return int(match.group(1)) * 1024 ** " kmg".index(match.group(2).lower() or " ")


# --- leaf tests -------------------------------------------------------------------------------

def _sender(value: Any, field: str, org: Organisation) -> Callable[[Record], bool]:
    patterns = _str_list(value, field)
    return lambda r: any(_glob_any(a, patterns) for a in addresses(r, "from", "sender"))


def _sender_domain(value: Any, field: str, org: Organisation) -> Callable[[Record], bool]:
    patterns = _str_list(value, field)
    return lambda r: any(_glob_any(_domain(a), patterns) for a in addresses(r, "from", "sender"))


def _recipient(value: Any, field: str, org: Organisation) -> Callable[[Record], bool]:
    patterns = _str_list(value, field)
    return lambda r: any(_glob_any(a, patterns) for a in addresses(r, "to", "cc", "bcc"))


def _reply_to_mismatch(value: Any, field: str, org: Organisation) -> Callable[[Record], bool]:
    """A Reply-To address in another domain than From: replies go somewhere the sender does not show."""
    wanted = _bool(value, field)

    def mismatch(r: Record) -> bool:
        sender = _domain((addresses(r, "from") or [""])[0])
        return any(_domain(a) != sender for a in addresses(r, "replyTo"))

    return lambda r: mismatch(r) == wanted


def _display_name(value: Any, field: str, org: Organisation) -> Callable[[Record], bool]:
    pattern = _regex(value, field)
    return lambda r: any(pattern.search(str((r.get(k) or {}).get("name") or "")) for k in ("from", "sender"))


def _impersonation(value: Any, field: str, org: Organisation) -> Callable[[Record], bool]:
    """Display name equals an internal person's name (or carries an internal address) but the
    address is outside the internal domains: the classic CEO-fraud pattern."""
    wanted = _bool(value, field)
    if wanted and not (org.people and org.domains):
        raise _fail(field, "needs organisation.domains and organisation.people in the configuration")
    names = {_normalise_name(p.name) for p in org.people if p.name}
    internal_addresses = {p.address.lower() for p in org.people if p.address}

    def impersonates(r: Record) -> bool:
        sender = r.get("from") or r.get("sender") or {}
        address = str(sender.get("address") or "").lower()
        name = str(sender.get("name") or "")[:FIELD_CHARS]  # no mail client shows more of a name
        if not address or org.is_internal(address):
            return False
        if _normalise_name(name) in names:
            return True
        # "John Smith <john.smith@contoso.com>" as the display name of an outside address.
        lowered = name.lower()
        return any(a in lowered for a in internal_addresses) or any(
            _glob_any(domain, org.domains) for domain in _domains_in(lowered))

    return impersonates if wanted else (lambda r: not impersonates(r))


def _text(key: str) -> Callable[[Any, str, Organisation], Callable[[Record], bool]]:
    def build(value: Any, field: str, org: Organisation) -> Callable[[Record], bool]:
        pattern = _regex(value, field, BODY_CHARS if key in ("body", "bodyHtml") else FIELD_CHARS)
        if key == "body":
            return lambda r: bool(pattern.search(body_text(r)))
        if key == "bodyHtml":
            return lambda r: bool(pattern.search(str(r.get("bodyHtml") or "")))
        return lambda r: bool(pattern.search(str(r.get(key) or "")))
    return build


def _url_domain(value: Any, field: str, org: Organisation) -> Callable[[Record], bool]:
    patterns = _str_list(value, field)
    return lambda r: any(_glob_any(u.get("domain"), patterns) for u in r.get("urls") or [])


def _url(value: Any, field: str, org: Organisation) -> Callable[[Record], bool]:
    pattern = _regex(value, field)
    return lambda r: any(pattern.search(str(u.get("url") or "")) for u in r.get("urls") or [])


def _link_mismatch(value: Any, field: str, org: Organisation) -> Callable[[Record], bool]:
    wanted = _bool(value, field)
    return lambda r: any(bool(u.get("mismatch")) for u in r.get("urls") or []) == wanted


ATTACHMENT_KEYS = ("name", "extension", "content_type", "sha256", "min_size", "max_size", "kind", "inline", "nested")


def _attachment(value: Any, field: str, org: Organisation) -> Callable[[Record], bool]:
    """One attachment (nested emails' attachments included) must satisfy every given sub-test."""
    if value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise _fail(field, f"expected a mapping of {', '.join(ATTACHMENT_KEYS)}, got {value!r}")
    unknown = sorted(set(value) - set(ATTACHMENT_KEYS))
    if unknown:
        raise _fail(f"{field}.{unknown[0]}", f"unknown attachment test {unknown[0]!r}; expected one of {', '.join(ATTACHMENT_KEYS)}")
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    if "name" in value:
        names = _str_list(value["name"], f"{field}.name")
        checks.append(lambda a: _glob_any(a.get("name"), names))
    if "extension" in value:
        exts = tuple(e.lstrip(".") for e in _str_list(value["extension"], f"{field}.extension"))
        checks.append(lambda a: (a.get("extension") or _ext(a.get("name"))).lower().lstrip(".") in exts)
    if "content_type" in value:
        types = _str_list(value["content_type"], f"{field}.content_type")
        checks.append(lambda a: _glob_any(a.get("contentType"), types))
    if "sha256" in value:
        hashes = _str_list(value["sha256"], f"{field}.sha256")
        bad = [h for h in hashes if not re.fullmatch(r"[0-9a-f]{64}", h)]
        if bad:
            raise _fail(f"{field}.sha256", f"not a SHA-256 hex digest: {bad[0]!r}")
        checks.append(lambda a: str(a.get("sha256") or "").lower() in hashes)
    if "min_size" in value:
        low = _size(value["min_size"], f"{field}.min_size")
        checks.append(lambda a: isinstance(a.get("size"), int) and a["size"] >= low)
    if "max_size" in value:
        high = _size(value["max_size"], f"{field}.max_size")
        checks.append(lambda a: isinstance(a.get("size"), int) and a["size"] <= high)
    if "kind" in value:
        kinds = _str_list(value["kind"], f"{field}.kind")
        checks.append(lambda a: str(a.get("kind") or "").lower() in kinds)
    if "inline" in value:
        inline = _bool(value["inline"], f"{field}.inline")
        checks.append(lambda a: bool(a.get("isInline")) == inline)
    nested = _bool(value.get("nested", True), f"{field}.nested")
    return lambda r: any(all(c(a) for c in checks) for a in iter_attachments(r, nested))


def _ext(name: Any) -> str:
    name = str(name or "")
    return name.rsplit(".", 1)[-1] if "." in name else ""


def _header(value: Any, field: str, org: Organisation) -> Callable[[Record], bool]:
    """``{name: X-Header, value: regex}``: some header of that name (any case) whose value matches."""
    if not isinstance(value, Mapping) or not isinstance(value.get("name"), str) or not value.get("name"):
        raise _fail(field, f"expected {{name: <header name>, value: <regex>}}, got {value!r}")
    unknown = sorted(set(value) - {"name", "value"})
    if unknown:
        raise _fail(f"{field}.{unknown[0]}", "unknown key; expected name and value")
    name = value["name"].lower()
    pattern = _regex(value["value"], f"{field}.value") if "value" in value else None
    return lambda r: any(str(h.get("name") or "").lower() == name and (pattern is None or pattern.search(str(h.get("value") or "")))
                         for h in r.get("headers") or [])


def _authentication(value: Any, field: str, org: Organisation) -> Callable[[Record], bool]:
    """``{spf: fail, dmarc: [fail, none]}``: every listed check has one of the listed verdicts.
    A missing verdict (or no ``authentication`` at all) counts as ``none``."""
    if not isinstance(value, Mapping) or not value:
        raise _fail(field, f"expected a mapping of spf/dkim/dmarc to verdicts, got {value!r}")
    wanted: dict[str, tuple[str, ...]] = {}
    for check, verdicts in value.items():
        if check not in ("spf", "dkim", "dmarc"):
            raise _fail(f"{field}.{check}", "unknown check; expected spf, dkim or dmarc")
        wanted[check] = _str_list(verdicts, f"{field}.{check}")
        bad = [v for v in wanted[check] if v not in VERDICTS]
        if bad:
            raise _fail(f"{field}.{check}", f"unknown verdict {bad[0]!r}; expected one of {', '.join(VERDICTS)}")
    return lambda r: all(str((r.get("authentication") or {}).get(c) or "none").lower() in v for c, v in wanted.items())


def _mailbox(value: Any, field: str, org: Organisation) -> Callable[[Record], bool]:
    patterns = _str_list(value, field)
    return lambda r: _glob_any(r.get("mailbox"), patterns)


def _folder(value: Any, field: str, org: Organisation) -> Callable[[Record], bool]:
    patterns = _str_list(value, field)
    return lambda r: _glob_any(r.get("folder"), patterns) or _glob_any(r.get("folderId"), patterns)


def _importance(value: Any, field: str, org: Organisation) -> Callable[[Record], bool]:
    levels = _str_list(value, field)
    return lambda r: str(r.get("importance") or "").lower() in levels


LEAVES: dict[str, Callable[[Any, str, Organisation], Callable[[Record], bool]]] = {
    "sender": _sender,
    "sender_domain": _sender_domain,
    "recipient": _recipient,
    "display_name": _display_name,
    "reply_to_mismatch": _reply_to_mismatch,
    "impersonates_internal": _impersonation,
    "subject": _text("subject"),
    "body": _text("body"),
    "body_html": _text("bodyHtml"),
    "url": _url,
    "url_domain": _url_domain,
    "link_mismatch": _link_mismatch,
    "attachment": _attachment,
    "header": _header,
    "authentication": _authentication,
    "mailbox": _mailbox,
    "folder": _folder,
    "importance": _importance,
}


def compile_condition(spec: Any, org: Organisation = Organisation(), field: str = "when") -> Condition:
    """Compile a condition spec; raise ConfigError naming ``field`` (e.g. ``when.all[1].subject``)."""
    if spec == "always" or spec is True:
        return ALWAYS
    if not isinstance(spec, Mapping) or not spec:
        raise _fail(field, f"expected a mapping of tests (or 'always'), got {spec!r}")
    parts: list[Condition] = []
    for key, value in spec.items():
        here = f"{field}.{key}"
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                raise _fail(here, f"expected a non-empty list of conditions, got {value!r}")
            children = [compile_condition(v, org, f"{here}[{i}]") for i, v in enumerate(value)]
            combine = all if key == "all" else any
            parts.append(Condition(here, lambda r, c=tuple(children), f=combine: f(x(r) for x in c)))
        elif key == "not":
            child = compile_condition(value, org, here)
            parts.append(Condition(here, lambda r, c=child: not c(r)))
        elif key in LEAVES:
            parts.append(Condition(here, LEAVES[key](value, here, org)))
        else:
            raise _fail(here, f"unknown condition {key!r}; expected one of all, any, not, {', '.join(LEAVES)}")
    if len(parts) == 1:
        return parts[0]
    return Condition(field, lambda r, c=tuple(parts): all(x(r) for x in c))
