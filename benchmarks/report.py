"""One report of every benchmark of a ``make bench`` run, in markdown and JSON.

``python -m benchmarks`` calls :func:`write` after the last benchmark:
``benchmarks/results/report.json`` (every figure, the machine, the commit, how long each
benchmark took) and ``benchmarks/results/report.md`` (a headline table of the ratios against
each benchmark's own baseline, then every figure). ``benchmarks/results/`` is git-ignored;
the README's "Benchmarks" section carries a copy of the latest markdown.
``python -m benchmarks NAME ...`` (a subset) replaces those benchmarks' entries in the existing
report and keeps the others, each with the date it was measured.
``python -m benchmarks.report [report.json]`` prints the markdown again from a JSON report.

This module has no ``run()``: it is not itself a benchmark.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import machine

RESULTS = Path(__file__).resolve().parent / "results"
# A row is a headline when it compares against the baseline measured in the same run.
HEADLINE_WORDS = ("ratio", "speed-up", "one process", "exactly once", "fork costs", "vs ", "latency p50")


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=RESULTS.parent.parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def entry(name: str, report: Any, seconds: float, error: str | None = None) -> dict[str, Any]:
    """One benchmark's result as plain data (``report`` is a :class:`benchmarks.Report` or anything printable)."""
    rows = [{"label": label, "value": value} for label, value in getattr(report, "rows", [])]
    if report is not None and not hasattr(report, "rows"):
        rows = [{"label": "output", "value": str(report)}]
    return {"name": name, "title": getattr(report, "name", name), "seconds": round(seconds, 1),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "rows": rows, "notes": list(getattr(report, "notes", [])), "error": error}


def build(entries: list[dict[str, Any]], *, quick: bool = False) -> dict[str, Any]:
    """The whole report: machine, date, commit and every benchmark's entry."""
    return {"machine": machine(), "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": _commit(), "quick": quick, "benchmarks": entries}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(data: dict[str, Any]) -> str:
    """The report as markdown: headline ratios first, then every figure of every benchmark."""
    lines = [f"Measured {data['date']} on {data['machine']} (commit {data['commit']}"
             + (", quick run" if data.get("quick") else "") + ").", "",
             "| benchmark | against its baseline (same run) |", "| --- | --- |"]
    for b in data["benchmarks"]:
        if b["error"]:
            lines.append(f"| {b['name']} | FAILED: {_cell(b['error'])} |")
            continue
        heads = [r for r in b["rows"] if any(w in (r["label"] + " " + r["value"]).lower() for w in HEADLINE_WORDS)]
        for r in heads or b["rows"][:1]:
            lines.append(f"| {b['name']} | {_cell(r['label'])}: {_cell(r['value'])} |")
    for b in data["benchmarks"]:
        when = f", {b['date']}" if b.get("date") and b["date"][:10] != data["date"][:10] else ""
        lines += ["", f"#### {b['name']}: {_cell(b['title'])} ({b['seconds']:.0f} s{when})", ""]
        if b["error"]:
            lines.append(f"FAILED: {_cell(b['error'])}")
            continue
        lines += ["| figure | value |", "| --- | --- |"]
        lines += [f"| {_cell(r['label'])} | {_cell(r['value'])} |" for r in b["rows"]]
        lines += [f"\n_{_cell(note)}_" for note in b["notes"]]
    return "\n".join(lines) + "\n"


def write(entries: list[dict[str, Any]], *, quick: bool = False, directory: Path = RESULTS,
          merge: bool = False) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``directory``; return their paths.

    ``merge``: keep the entries of benchmarks not in ``entries`` from the existing report.
    """
    json_path, md_path = directory / "report.json", directory / "report.md"
    if merge and json_path.exists():
        ran = {e["name"] for e in entries}
        kept = [e for e in json.loads(json_path.read_text(encoding="utf-8"))["benchmarks"] if e["name"] not in ran]
        entries = sorted(kept + entries, key=lambda e: e["name"])
    data = build(entries, quick=quick)
    directory.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(markdown(data), encoding="utf-8")
    return md_path, json_path


def main(argv: list[str] | None = None) -> int:
    """Print the markdown of a JSON report (default: the latest one)."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else RESULTS / "report.json"
    print(markdown(json.loads(path.read_text(encoding="utf-8"))), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
