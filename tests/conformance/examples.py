"""Microsoft's documented example requests and responses (``examples/*.json``) and how to compare with them.

Each file holds one example from microsoftgraph/microsoft-graph-docs-contrib, citing repository, path
and commit (``source``). Long strings were shortened where the page itself truncates them; names, nesting
and JSON types are as published. Optional keys:

- ``adapt``: sample keys of the page (ids, ``me``, URLs) and the fixture object that replaces each;
- ``emulator: false``: a payload Graph *sends* (notifications) or one naming APIs the emulator does not
  serve: only graphhook's parsers are checked against it;
- ``exact``: the page lists every property of the resource (v1.0 ``referenceAttachment``): the emulator
  may add nothing but ``@odata.*`` annotations;
- ``xfail``: property paths another branch makes conform (issue 22), expected to fail until it merges.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent / "examples"
GRAPH_V1 = "https://graph.microsoft.com/v1.0"


def load(name: str) -> dict[str, Any]:
    """One example by file name (without ``.json``)."""
    return json.loads((HERE / f"{name}.json").read_text())


def names(*, emulator: bool | None = None) -> list[str]:
    """Every example's name; ``emulator=True`` keeps those the emulator must answer."""
    out = []
    for path in sorted(HERE.glob("*.json")):
        data = json.loads(path.read_text())
        if emulator is None or data.get("emulator", True) == emulator:
            out.append(path.stem)
    return out


def adapt(value: Any, mapping: dict[str, str]) -> Any:
    """``value`` (a string, or JSON) with every sample key replaced by its fixture value."""
    if isinstance(value, str):
        for sample, actual in sorted(mapping.items(), key=lambda kv: -len(kv[0])):
            value = value.replace(sample, actual)
        return value
    if isinstance(value, list):
        return [adapt(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: adapt(v, mapping) for k, v in value.items()}
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}[type(value)]


def mismatches(documented: Any, actual: Any, path: str = "", *, exact: bool = False) -> list[str]:
    """Where ``actual`` lacks a documented property or has another JSON type (``path: problem``).

    A documented ``null`` says nothing about the type; arrays are compared by their first items.
    With ``exact``, properties the page does not list (other than ``@odata.*``) are reported too.
    """
    where = path or "(body)"
    if documented is None:
        return []
    if _kind(documented) != _kind(actual):
        return [f"{where}: documented {_kind(documented)}, got {_kind(actual)} ({json.dumps(actual)[:80]})"]
    problems: list[str] = []
    if isinstance(documented, dict):
        for key, value in documented.items():
            sub = f"{path}.{key}" if path else key
            if key not in actual:
                problems.append(f"{sub}: missing")
            else:
                problems += mismatches(value, actual[key], sub)
        if exact:
            problems += [f"{path + '.' if path else ''}{k}: not documented" for k in actual
                         if k not in documented and not k.startswith("@odata.")]
    elif isinstance(documented, list) and documented and actual:
        problems += mismatches(documented[0], actual[0], f"{path}[0]")
    return problems


def split_expected(problems: list[str], xfail: dict[str, str]) -> tuple[list[str], list[str]]:
    """(problems no branch is expected to fix, problems another branch fixes) by property path."""
    expected = [p for p in problems if p.split(":", 1)[0] in xfail]
    return [p for p in problems if p not in expected], expected
