"""URLs found in a message body, with a flag where the link text shows another domain than the target.

``<a href="http://evil.example/x">https://portal.office.com</a>`` is the classic
phishing shape: the reader sees one domain, the click goes to another. For HTML
bodies every ``href`` is reported with its visible text; bare URLs in text
(and in HTML outside links) are reported too, without text.

The body is a stranger's: it is parsed once, by libxml2's HTML parser (linear; lxml),
and only its first ``HTML_CHARS`` / ``TEXT_CHARS`` characters are read, so a message
costs at most one bounded pass. Links past the bound are not reported (the record
keeps the body whole).
"""

from __future__ import annotations

import re
from typing import Any, Mapping
from urllib.parse import urlsplit

from lxml import etree

MAX_URLS = 500  # per message; a record must stay small
# Bounds that keep a stranger's body from costing more than a linear pass over at most this much.
HTML_CHARS = 1024 * 1024  # characters of an HTML body parsed for links and visible text
TEXT_CHARS = 1024 * 1024  # characters of a text body (or of text outside links) searched for bare URLs
LINK_TEXT_CHARS = 2048  # characters of a link's text examined for the domain it shows
_HIDDEN = frozenset(("style", "script", "head", "title", "template", "noscript"))
_BLOCK = frozenset(("br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "td", "th"))
_URL_IN_TEXT = re.compile(r"""\b(?:https?://|www\.)[^\s<>"'()\[\]{}]+""", re.IGNORECASE)
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,31}", re.IGNORECASE)
_HOST = re.compile(r"(?:[a-z0-9-]+\.)+[a-z]{2,63}", re.IGNORECASE)


def domain_of(url: str) -> str | None:
    """The lower-case host of ``url`` (``www.`` URLs without a scheme included), or None."""
    candidate = url.strip()
    if candidate.lower().startswith("www."):
        candidate = "http://" + candidate
    try:
        host = urlsplit(candidate).hostname
    except ValueError:
        return None
    return host.rstrip(".").lower() if host else None


def text_domain(text: str) -> str | None:
    """The domain the link text shows, when the whole text looks like a URL or a domain name.

    ``[scheme://][user@]host[:port][/?#rest]`` with no whitespace, taken apart by hand in one
    pass: a backtracking regex over the whole text was quadratic in a stranger's link text.
    Only the first ``LINK_TEXT_CHARS`` characters are looked at (the host comes first).
    """
    token = text.strip()[:LINK_TEXT_CHARS].rstrip(".,;:!?")
    if not token or any(c.isspace() for c in token):
        return None
    scheme, sep, rest = token.partition("://")
    if not sep:
        rest = token
    elif not _SCHEME.fullmatch(scheme):
        return None
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo, at, hostport = authority.rpartition("@")
    if at and not userinfo:
        return None
    host, colon, port = hostport.partition(":")
    if (colon and not port.isdigit()) or len(host) > 253 or not _HOST.fullmatch(host):
        return None
    return host.lower()


def _same_site(a: str, b: str) -> bool:
    """``login.example.com`` and ``example.com`` are the same site; ``example.com.evil.net`` is not."""
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def url_record(url: str, text: str | None = None) -> dict[str, Any]:
    """One ``urls`` entry: url, domain, text, textDomain, mismatch."""
    url = url.strip()
    domain = domain_of(url)
    shown = text_domain(text) if text else None
    return {"url": url, "domain": domain, "text": text, "textDomain": shown,
            "mismatch": bool(shown and domain and not _same_site(shown, domain))}


class _Links:
    """lxml parser target: collects links with their text, text outside links, and visible text."""

    def __init__(self) -> None:
        self.links: list[tuple[str, str]] = []
        self.outside: list[str] = []
        self.text: list[str] = []
        self._skip = 0  # inside <style>/<script>/<head>/<title>: not visible text
        self._href: str | None = None
        self._text: list[str] = []

    def start(self, tag: str, attrib: Mapping[str, str]) -> None:
        tag = tag.lower()
        if tag in _HIDDEN:
            self._skip += 1
        elif tag in _BLOCK:
            self.text.append("\n")
        if tag == "a":
            self._finish()
            href = attrib.get("href")
            if href and not href.lower().startswith(("mailto:", "tel:", "#", "cid:", "javascript:")):
                self._href, self._text = href, []

    def end(self, tag: str) -> None:
        tag = tag.lower()
        if tag in _HIDDEN:
            self._skip = max(0, self._skip - 1)
        if tag == "a":
            self._finish()

    def data(self, data: str) -> None:
        if self._skip:
            return
        self.text.append(data)
        (self._text if self._href is not None else self.outside).append(data)

    def comment(self, text: str) -> None:
        """Comments are not visible text."""

    def close(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if self._href is not None:
            self.links.append((self._href, " ".join("".join(self._text).split())))
        self._href, self._text = None, []


def _parser(target: _Links) -> etree.HTMLParser:
    """libxml2's HTML parser (HTML5 tokenizer since libxml2 2.14), calling ``target`` as it goes.

    One pass in C, linear in the input; CPython 3.11's html.parser is not (``'<a ' * 8000`` took
    29 s there). Decoding is ours (UTF-8 bytes in), so a ``<meta charset>`` in the body changes
    nothing; no network, no tree is built.
    """
    return etree.HTMLParser(target=target, encoding="utf-8", recover=True, no_network=True,
                            remove_comments=True, remove_pis=True)


def scan_html(body: str) -> tuple[list[dict[str, Any]], str]:
    """The URLs of an HTML body and its visible text, in one parse of its first ``HTML_CHARS`` characters."""
    links = _Links()
    if body:
        parser = _parser(links)
        try:
            parser.feed(body[:HTML_CHARS].encode("utf-8", "replace"))
            parser.close()
        except etree.LxmlError:  # markup libxml2 gives up on: keep what was parsed
            links.close()
    lines = ("".join(links.text)).splitlines()
    text = "\n".join(" ".join(line.split()) for line in lines if line.strip())
    return _records(links.links, " ".join(links.outside)), text


def extract(body: str | None, content_type: str = "html") -> list[dict[str, Any]]:
    """The URLs of a body (``content_type`` ``html`` or ``text``), de-duplicated by (url, text)."""
    if not body:
        return []
    if content_type == "html":
        return scan_html(body)[0]
    return _records([], body)


def _records(links: list[tuple[str, str]], plain: str) -> list[dict[str, Any]]:
    found: list[tuple[str, str | None]] = [(href.strip(), text or None) for href, text in links]
    found.extend((m.group(0).rstrip(".,;:!?"), None) for m in _URL_IN_TEXT.finditer(plain[:TEXT_CHARS]))
    seen: set[tuple[str, str | None]] = set()
    out: list[dict[str, Any]] = []
    for url, text in found:
        if (url, text) in seen:
            continue
        seen.add((url, text))
        out.append(url_record(url, text))
        if len(out) >= MAX_URLS:
            break
    return out
