"""Why a rule matches an email record, or not: each test of its ``when``, evaluated on its own.

Pure: the rule's condition spec (as written in the YAML file) and a record in, one line per test out.
Each test is compiled with the same :func:`workers.triggers.rules.compile_condition` the rule engine
uses, so what is shown is what the engine decides. Used by ``graphhook rules test``.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from workers.triggers.rules import Organisation, compile_condition

SCHEMA = "graphhook.email/1"  # workers.records.messages.SCHEMA, the record's version


def _short(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def explain(spec: Any, record: Mapping[str, Any], org: Organisation = Organisation(),
            field: str = "when", depth: int = 0) -> Iterator[dict[str, Any]]:
    """One entry per test and combinator of ``spec``: ``{"path", "test", "held", "depth"}``, depth first."""
    if spec == "always" or spec is True:
        yield {"path": field, "test": "always", "held": True, "depth": depth}
        return
    if not isinstance(spec, Mapping):
        return
    for key, value in spec.items():
        here = f"{field}.{key}"
        if key in ("all", "any") and isinstance(value, list):
            yield {"path": here, "test": f"{key} of {len(value)}",
                   "held": compile_condition({key: value}, org, field)(record), "depth": depth}
            for i, child in enumerate(value):
                yield from explain(child, record, org, f"{here}[{i}]", depth + 1)
        elif key == "not":
            yield {"path": here, "test": "not", "held": compile_condition({key: value}, org, field)(record),
                   "depth": depth}
            yield from explain(value, record, org, here, depth + 1)
        else:
            yield {"path": here, "test": f"{key}: {_short(value)}",
                   "held": compile_condition({key: value}, org, field)(record), "depth": depth}


def problem(document: Any) -> str | None:
    """Why ``document`` is not an email record (None when it is one)."""
    if not isinstance(document, Mapping):
        return f"expected a JSON object, got {type(document).__name__}"
    if document.get("schema") == SCHEMA:
        return None
    if "body" in document and ("toRecipients" in document or "@odata.context" in document):
        return "it is a Graph message (the output of 'graphhook mail get'), not an email record"
    return f"it has no \"schema\": \"{SCHEMA}\" (an email record, or an event from graphhook:events holding one)"
