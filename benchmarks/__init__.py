"""Benchmarks for ``make bench``: each module here with a ``run()`` is one benchmark.

A benchmark measures against a baseline in the same run and returns a
:class:`Report`; ``python -m benchmarks`` runs them all (or those named on the
command line) and prints the reports. Benchmarks never assert: figures go in the README.

To add one: create ``benchmarks/<name>.py`` defining ``run(quick: bool = False) -> Report``
(``quick`` is optional; any printable return value is accepted).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field


@dataclass
class Report:
    """What one benchmark measured: (label, value) rows, in print order, plus free-form notes."""

    name: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, label: str, value: str) -> None:
        """Append one figure."""
        self.rows.append((label, value))

    def render(self) -> str:
        """The report as aligned text."""
        width = max((len(label) for label, _ in self.rows), default=0)
        lines = [f"== {self.name} =="]
        lines += [f"  {label.ljust(width)}  {value}" for label, value in self.rows]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def machine() -> str:
    """A one-line description of the machine the figures come from."""
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"
