"""SPF, DKIM and DMARC verdicts from ``Authentication-Results`` headers (RFC 8601).

Exchange Online stamps one header per message, e.g.
``spf=fail (sender IP is 203.0.113.7) smtp.mailfrom=example.net; dkim=none (message not signed)
header.d=none;dmarc=fail action=none header.from=example.net;compauth=fail reason=001``
(https://learn.microsoft.com/defender-office-365/message-headers-eop-mdo#authentication-results-message-header).
Verdicts are returned lower-case as written (pass, fail, softfail, neutral,
none, temperror, permerror, bestguesspass, …); a method that is absent is None.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

METHODS = ("spf", "dkim", "dmarc")
_COMMENT = re.compile(r"\([^()]*\)")
_RESULT = re.compile(r"(?:^|[;\s])(spf|dkim|dmarc)\s*=\s*([A-Za-z]+)", re.IGNORECASE)


def parse(values: Iterable[str]) -> dict[str, str | None]:
    """Verdicts from one or more header values; the first verdict per method wins (the nearest hop)."""
    found: dict[str, str | None] = dict.fromkeys(METHODS)
    for value in values:
        text = value
        for _ in range(3):  # comments may nest, RFC 8601 §2.2
            text = _COMMENT.sub(" ", text)
        for method, verdict in _RESULT.findall(text):
            method = method.lower()
            if found[method] is None:
                found[method] = verdict.lower()
    return found


def from_headers(headers: Iterable[Mapping[str, str]]) -> dict[str, str | None]:
    """Verdicts from Graph's ``internetMessageHeaders`` (``[{"name", "value"}]``).

    ``ARC-Authentication-Results`` is only used when no ``Authentication-Results`` exists.
    """
    primary, arc = [], []
    for header in headers:
        name = (header.get("name") or "").lower()
        if name == "authentication-results":
            primary.append(header.get("value") or "")
        elif name == "arc-authentication-results":
            arc.append(re.sub(r"^\s*i=\d+\s*;", "", header.get("value") or ""))
    return parse(primary or arc)
