"""``python -m benchmarks [--quick] [NAME ...]`` (``make bench``): run every benchmark module and print a report."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import sys
import time

import benchmarks


def discover() -> list[str]:
    """Names of the benchmark modules: public modules of this package that define ``run``."""
    names = []
    for info in pkgutil.iter_modules(benchmarks.__path__):
        if not info.name.startswith("_") and hasattr(importlib.import_module(f"benchmarks.{info.name}"), "run"):
            names.append(info.name)
    return sorted(names)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks one after the other (they share the machine, so never in parallel)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs: a smoke test of the benchmarks")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(discover())})")
    args = parser.parse_args(argv)
    names = args.names or discover()
    print(f"machine: {benchmarks.machine()}", flush=True)
    from benchmarks import report as combined

    failed = 0
    entries = []
    for name in names:
        started = time.monotonic()
        try:
            run = importlib.import_module(f"benchmarks.{name}").run
            accepts_quick = "quick" in inspect.signature(run).parameters
            report = run(quick=args.quick) if accepts_quick else run()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"== {name} ==\n  FAILED: {type(exc).__name__}: {exc}", flush=True)
            entries.append(combined.entry(name, None, time.monotonic() - started, f"{type(exc).__name__}: {exc}"))
            failed += 1
            continue
        print(report.render() if hasattr(report, "render") else report, flush=True)
        print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
        entries.append(combined.entry(name, report, time.monotonic() - started))
        combined.write(entries, quick=args.quick, merge=bool(args.names))  # after each one: an interrupted run keeps what it measured
    md, js = combined.write(entries, quick=args.quick, merge=bool(args.names))
    print(f"report: {md} and {js}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
