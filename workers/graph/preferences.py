"""The ``Prefer`` preferences graphhook sends with every Graph request.

Outlook gives a message a new id when it moves to another folder, unless the request
carries ``Prefer: IdType="ImmutableId"``; and "this header only applies to the request it
is included with. If you want to always use immutable IDs, you must include this header
with every API request" (https://learn.microsoft.com/graph/outlook-immutable-id;
microsoftgraph/microsoft-graph-docs-contrib concepts/outlook-immutable-id.md at 122c492).
graphhook moves messages (quarantine rules) and hands their ids to webhooks, handlers,
purge reports and responders, so every request prefers immutable ids:

- ``POST /subscriptions``: notifications of that subscription carry immutable ids (a
  subscription created without it keeps regular ids until it is recreated);
- message GETs, ``$batch`` parts (a batch's own headers do not reach its parts), actions
  (``move`` answers with the moved message's id, which is then the same id), searches and
  delta rounds (delta and skip links work with both formats, so no resync is needed).

``Prefer`` is a list header (RFC 7240): several preferences go comma-separated in one header,
which is equivalent to several ``Prefer`` lines.
"""

from __future__ import annotations

from typing import Iterable, Mapping

IMMUTABLE_ID = 'IdType="ImmutableId"'
DEFAULT: tuple[str, ...] = (IMMUTABLE_ID,)


def _name(preference: str) -> str:
    return preference.split("=", 1)[0].strip().lower()


def merged(headers: Mapping[str, str] | None, prefer: Iterable[str]) -> dict[str, str]:
    """``headers`` with ``prefer`` added to its ``Prefer`` header; a preference the caller already set wins."""
    out = dict(headers or {})
    key = next((k for k in out if k.lower() == "prefer"), "Prefer")
    given = [p.strip() for p in str(out.get(key, "")).split(",") if p.strip()]
    names = {_name(p) for p in given}
    added = [p for p in prefer if _name(p) not in names]
    if given or added:
        out[key] = ", ".join(given + added)
    return out
