"""URLs found in a message body, with a flag where the link text shows another domain than the target.

``<a href="http://evil.example/x">https://portal.office.com</a>`` is the classic
phishing shape: the reader sees one domain, the click goes to another. For HTML
bodies every ``href`` is reported with its visible text; bare URLs in text
(and in HTML outside links) are reported too, without text.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

MAX_URLS = 500  # per message; a record must stay small
_URL_IN_TEXT = re.compile(r"""\b(?:https?://|www\.)[^\s<>"'()\[\]{}]+""", re.IGNORECASE)
_DOMAIN_IN_TEXT = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:[^/\s@]+@)?((?:[a-z0-9-]+\.)+[a-z]{2,63})(?::\d+)?(?:[/?#]\S*)?$",
                             re.IGNORECASE)


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
    """The domain the link text shows, when the whole text looks like a URL or a domain name."""
    match = _DOMAIN_IN_TEXT.match(text.strip().rstrip(".,;:!?"))
    return match.group(1).lower() if match else None


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


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self.outside: list[str] = []
        self.text: list[str] = []
        self._skip = 0  # inside <style>/<script>/<head>: not visible text
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip += 1
        elif tag in ("br", "p", "div", "tr", "li"):
            self.text.append("\n")
        if tag == "a":
            self._finish()
            href = dict(attrs).get("href")
            if href and not href.lower().startswith(("mailto:", "tel:", "#", "cid:", "javascript:")):
                self._href, self._text = href, []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip = max(0, self._skip - 1)
        if tag == "a":
            self._finish()

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.text.append(data)
        (self._text if self._href is not None else self.outside).append(data)

    def _finish(self) -> None:
        if self._href is not None:
            self.links.append((self._href, " ".join("".join(self._text).split())))
        self._href, self._text = None, []


def scan_html(body: str) -> tuple[list[dict[str, Any]], str]:
    """The URLs of an HTML body and its visible text, in one parse."""
    parser = _Links()
    try:
        parser.feed(body)
        parser.close()
    except (AssertionError, ValueError):  # pathological markup: report what was parsed
        pass
    parser._finish()
    lines = ("".join(parser.text)).splitlines()
    text = "\n".join(" ".join(line.split()) for line in lines if line.strip())
    return _records(parser.links, " ".join(parser.outside)), text


def extract(body: str | None, content_type: str = "html") -> list[dict[str, Any]]:
    """The URLs of a body (``content_type`` ``html`` or ``text``), de-duplicated by (url, text)."""
    if not body:
        return []
    if content_type == "html":
        return scan_html(body)[0]
    return _records([], body)


def _records(links: list[tuple[str, str]], plain: str) -> list[dict[str, Any]]:
    found: list[tuple[str, str | None]] = [(href.strip(), text or None) for href, text in links]
    found.extend((m.group(0).rstrip(".,;:!?"), None) for m in _URL_IN_TEXT.finditer(plain))
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
