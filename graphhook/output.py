"""What commands print: aligned tables and name/value pairs for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Iterable, Mapping, Sequence, TextIO


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *, stream: TextIO | None = None,
          cell: Callable[[Mapping[str, Any], str], str] | None = None) -> None:
    """Print ``rows`` under upper-cased ``columns``, each column as wide as its widest cell.

    ``cell(row, column)`` renders one cell (default: the value, empty for None); trailing
    spaces are trimmed so the last column is never padded.
    """
    out = stream or sys.stdout
    render = cell or (lambda row, column: "" if row.get(column) is None else str(row.get(column)))
    cells = [[render(row, c) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip(), file=out)
    for line in cells:
        print("  ".join(text.ljust(w) for text, w in zip(line, widths)).rstrip(), file=out)


def pairs(values: Mapping[str, Any], *, stream: TextIO | None = None) -> None:
    """Print ``name  value`` lines with the names aligned; a multi-line value starts on its own line."""
    out = stream or sys.stdout
    width = max((len(k) for k in values), default=0)
    for name, value in values.items():
        text = str(value if value is not None else "")
        print(f"{name.ljust(width)}  {text}" if "\n" not in text else f"{name}\n{text}", file=out)


def print_json(value: Any, *, stream: TextIO | None = None) -> None:
    """Pretty-printed JSON and a newline."""
    out = stream or sys.stdout
    json.dump(value, out, indent=2)
    out.write("\n")
