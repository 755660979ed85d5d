"""``graphhook check [--config-only]``: connection and permission test; a checklist with a fix per failure.

Exit status 0 when nothing failed (warnings allowed), 1 otherwise. The Heroku
``release`` phase runs ``graphhook check --config-only`` so that a broken
configuration file fails the release instead of the running dynos.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any, Mapping, Sequence
from urllib.parse import urlsplit

import requests

from graphhook.core.errors import ConfigError
from graphhook.core.settings import Settings
from graphhook.output import add_format_flags, print_json, wants_json

if TYPE_CHECKING:
    from workers.check.checklist import Report

SECTIONS = ("config", "token", "public-url", "redis")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``check`` to the ``graphhook`` command line."""
    p = sub.add_parser("check", help="connection and permission test, with a fix for each failure")
    p.add_argument("--config-only", action="store_true",
                   help="validate the configuration file (GRAPHHOOK_CONFIG) only; for the release phase")
    p.add_argument("--skip", action="append", default=[], choices=SECTIONS,
                   help="leave out one section (repeatable), e.g. --skip public-url before the first deploy")
    add_format_flags(p)
    p.set_defaults(func=run)


def _settings(env: Mapping[str, str], report: "Report") -> Settings | None:
    """Settings from ``env``; a non-https PUBLIC_URL is reported by its own check, other errors end the run."""
    from workers.check.checklist import FAIL, Result

    env = dict(env)
    public = env.get("PUBLIC_URL", "")
    if public and not public.startswith("https://"):
        env["PUBLIC_URL"] = ""  # checked (and failed) with a fix in check_public_url
    try:
        return Settings.from_env(env).replace(public_url=public.rstrip("/"))
    except ConfigError as exc:
        report.add(Result("settings", FAIL, str(exc), "correct that variable; deploy/env.example lists each one "
                                                      "with its default"))
        return None


def run_checks(env: Mapping[str, str], *, config_only: bool = False, skip: Sequence[str] = (),
               session: requests.Session | None = None) -> "Report":
    """Run the checklist against the settings in ``env``; never raises for what it checks."""
    from workers.check.checklist import OK, Report, Result
    from workers.check.infra import check_config, check_public_url, check_redis
    from workers.check.tenants import check_tenants

    try:
        redis_password = urlsplit(env.get("REDIS_URL", "")).password or ""
    except ValueError:
        redis_password = ""
    secrets = (env.get("AZURE_CLIENT_SECRET", ""), env.get("AZURE_CLIENT_CERTIFICATE_PASSWORD", ""), redis_password)
    report = Report(secrets=secrets)
    settings = _settings(env, report)
    if settings is None:
        return report
    if not config_only:
        report.add(Result("settings", OK, "environment read"))
    config = None
    if "config" not in skip or config_only:
        result, config = check_config(settings.config_path, lambda path: _validate(path, env))
        report.add(result)
        if config is not None:  # the credentials of apps: are secrets too
            report.secrets += tuple(s for t in config.tenants if t.app for s in (t.app.secret, t.app.certificate_password))
    if config_only:
        return report
    if "token" not in skip:  # per tenant: token, its roles against those needed, one mailbox readable
        report.extend(check_tenants(settings, config, session))
    if "public-url" not in skip:
        report.extend(check_public_url(settings.public_url, session))
    if "redis" not in skip:
        report.extend(check_redis(settings))
    return report


def _validate(path: str, env: Mapping[str, str]) -> Any:
    from workers.triggers.config import validate_config

    return validate_config(path, env)


def run(args: argparse.Namespace) -> int:
    """Print the checklist; exit 1 when any check failed."""
    report = run_checks(os.environ, config_only=args.config_only, skip=args.skip)
    if wants_json(args):
        print_json({"ok": not report.failed, "results": [
            {"name": r.name, "status": r.status, "detail": r.detail, "fix": r.fix} for r in report.results]})
    else:
        print(report.render(), flush=True)
    return 1 if report.failed else 0
