"""``graphhook`` command line: one sub-command per process type or operator task.

Each sub-command lives in :mod:`graphhook.commands`; settings are read once, at
the entry point of the command, and passed down.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from graphhook.core.errors import ConfigError, GraphhookError

from .commands import COMMANDS


def configure_logging(process: str) -> None:
    """JSON lines (GRAPHHOOK_LOG_FORMAT=text for humans), secrets redacted: see graphhook/core/logs.py."""
    import os

    from graphhook.core import logs
    from graphhook.core.settings import Settings

    try:
        settings = Settings.from_env()
    except ConfigError:  # the command itself reports it; log with defaults meanwhile
        settings = None
    logs.configure(settings, process=process, env=os.environ)


def version() -> str:
    """The installed distribution's version (``setup.cfg``)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("graphhook")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphhook", description="Receive Microsoft Graph mail notifications, fetch the mail, act on it.",
        epilog="Commands that report print a table on a terminal and JSON with --json (same fields).")
    parser.add_argument("--version", action="version", version=f"graphhook {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"graphhook.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; configuration errors exit 2, other graphhook errors exit 1."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        configure_logging(args.command)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"graphhook: configuration error: {exc}", file=sys.stderr)
        return 2
    except GraphhookError as exc:
        print(f"graphhook: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
