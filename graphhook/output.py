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


# --- the one output convention -------------------------------------------------------------------
# On a terminal every command prints tables; ``--json`` prints the same fields as JSON on stdout.
# When stdout is not a terminal, commands that always printed JSON (``piped_json``) keep doing so,
# so scripts written before the convention keep working; ``--table`` forces the table anywhere.

def add_format_flags(parser: Any, *, piped_json: bool = False) -> None:
    """Add ``--json`` and ``--table`` (exclusive); ``piped_json``: JSON by default when stdout is not a terminal."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="machine-readable JSON on stdout (same fields)")
    group.add_argument("--table", action="store_true", help="a readable table" + (
        " (the default on a terminal; JSON otherwise)" if piped_json else " (the default)"))
    parser.set_defaults(piped_json=piped_json)


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (stdout by default) is a terminal."""
    isatty = getattr(stream or sys.stdout, "isatty", None)
    return bool(isatty and isatty())


def wants_json(args: Any) -> bool:
    """JSON or a table for this run: ``--json`` / ``--table`` if given, else the command's default for stdout."""
    if getattr(args, "json", False):
        return True
    if getattr(args, "table", False):
        return False
    return bool(getattr(args, "piped_json", False)) and not is_terminal()
