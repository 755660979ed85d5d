"""Which absolute URLs may carry the Graph bearer token: only those on ``GRAPH_URL``'s scheme, host and port.

``@odata.nextLink`` and ``@odata.deltaLink`` are absolute URLs that graphhook follows, and a
deltaLink is kept in Redis between syncs (https://learn.microsoft.com/graph/delta-query-overview).
Whoever can write Redis (or answer in Graph's place) could point one elsewhere and collect the
token, so a link is followed with the token only when it is on the configured Graph origin.
URLs are compared parsed, never by string prefix (``https://graph.microsoft.com@evil.example/``
starts with the Graph URL), and by both parsers involved: :func:`urllib.parse.urlsplit` and
urllib3's ``parse_url``, which requests uses to open the connection; where they disagree
(``https://evil.example\\@graph.microsoft.com/``) the link is refused.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

_DEFAULT_PORTS = {"https": 443, "http": 80}

Origin = tuple[str, str, int]


def origin(url: str) -> Origin | None:
    """``(scheme, host, port)`` of an absolute URL; None when it has none or the two parsers disagree."""
    try:
        split = urlsplit(url)
        split_port = split.port
        parsed = parse_url(url)
    except (ValueError, LocationParseError):
        return None
    scheme = (split.scheme or "").lower()
    if scheme not in _DEFAULT_PORTS or not split.hostname:
        return None
    ours = (scheme, split.hostname.lower(), split_port or _DEFAULT_PORTS[scheme])
    theirs = ((parsed.scheme or "").lower(), (parsed.host or "").lower(), parsed.port or _DEFAULT_PORTS[scheme])
    return ours if ours == theirs else None


def shown(url: str) -> str:
    """``scheme://host`` of a URL for an error message: never its path or query (a link may carry a token)."""
    split = urlsplit(url)
    return f"{split.scheme}://{split.hostname or '?'}" + (f":{split.port}" if _port(split) else "")


def _port(split) -> int | None:
    try:
        return split.port
    except ValueError:
        return None
