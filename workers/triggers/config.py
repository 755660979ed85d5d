"""The YAML configuration (``GRAPHHOOK_CONFIG``): mailboxes to watch, rules, webhooks and handlers.

Loaded once per process into frozen values and validated completely at load
time: regexes compiled, templates parsed, webhook and handler names resolved,
secrets looked up. Every error names the file, the rule and the field, and
quotes the bad value. Secrets never appear in the file: a webhook names the
environment variable that holds its signing secret (``secret_env``); an
inline ``secret:`` is refused. Reference: docs/configuration.md.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from graphhook.core.errors import ConfigError
from graphhook.core.logs import register_secret
from workers.triggers.config_fields import (
    _action,
    _addresses,
    _bool,
    _mapping,
    _refuse_inline_secrets,
    _webhook_url,
    _Where,
)
from workers.triggers.handlers import resolve
from workers.triggers.model import (
    DEFAULT_FOLDERS,
    DEFAULT_MAX_CONTENT_BYTES,
    DEFAULT_WEBHOOK_BACKOFF,
    DEFAULT_WEBHOOK_TIMEOUT,
    EMPTY,
    Config,
    HandlerConfig,
    MailboxWatch,
    Rule,
    WebhookConfig,
)
from workers.triggers.rules import Organisation, Person, compile_condition
from workers.triggers.tenants import parse_apps, parse_tenants, tenant_named, view

VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _webhook(name: str, spec: Any, w: _Where, env: Mapping[str, str]) -> WebhookConfig:
    where = f"webhook {name!r}"
    m = _mapping(spec, where, w, ("url", "secret_env", "format", "timeout", "backoff", "include_content",
                                   "max_content_bytes", "all_mail"))
    url = _webhook_url(m.get("url"), where, w)
    secret_env = m.get("secret_env")
    if not isinstance(secret_env, str) or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", secret_env):
        raise w.error(f"{where}: field secret_env", f"expected an environment variable name such as SOAR_WEBHOOK_SECRET, got {secret_env!r}")
    secret = env.get(secret_env, "")
    register_secret(secret)  # never logged, whatever the variable's name
    if len(secret) < 16:
        raise w.error(f"{where}: field secret_env",
                      f"environment variable {secret_env} is {'unset' if not secret else 'shorter than 16 characters'}; "
                      "it must hold the webhook signing secret")
    fmt = m.get("format", "graphhook")
    if fmt not in ("graphhook", "insightconnect"):
        raise w.error(f"{where}: field format", f"expected graphhook or insightconnect, got {fmt!r}")
    timeout = m.get("timeout", DEFAULT_WEBHOOK_TIMEOUT)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 120:
        raise w.error(f"{where}: field timeout", f"expected seconds between 0 and 120, got {timeout!r}")
    backoff = m.get("backoff", list(DEFAULT_WEBHOOK_BACKOFF))
    if not isinstance(backoff, list) or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in backoff):
        raise w.error(f"{where}: field backoff", f"expected a list of seconds between attempts, got {backoff!r}")
    max_bytes = m.get("max_content_bytes", DEFAULT_MAX_CONTENT_BYTES)
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
        raise w.error(f"{where}: field max_content_bytes", f"expected a whole number of bytes, got {max_bytes!r}")
    return WebhookConfig(name, url, secret_env, secret, fmt, float(timeout), tuple(backoff),
                         _bool(m.get("include_content", False), f"{where}: field include_content", w), max_bytes,
                         _bool(m.get("all_mail", False), f"{where}: field all_mail", w))


def _handler(name: str, spec: Any, w: _Where) -> HandlerConfig:
    where = f"handler {name!r}"
    if isinstance(spec, str):
        spec = {"path": spec}
    m = _mapping(spec, where, w, ("path", "entry_point", "all_mail"))
    path, entry = m.get("path", ""), m.get("entry_point", "")
    if bool(path) == bool(entry):
        raise w.error(where, f"give exactly one of path (pkg.module:function) or entry_point, got {dict(m)!r}")
    if path and not re.fullmatch(r"[A-Za-z_][\w.]*[:.][A-Za-z_]\w*", str(path)):
        raise w.error(f"{where}: field path", f"expected a dotted path such as mypkg.handlers:on_email, got {path!r}")
    return HandlerConfig(name, str(path), str(entry), _bool(m.get("all_mail", False), f"{where}: field all_mail", w))


def _mailboxes(value: Any, w: _Where) -> tuple[MailboxWatch, ...]:
    if not isinstance(value, list):
        raise w.error("mailboxes", f"expected a list of addresses or {{address, folders}}, got {value!r}")
    out: list[MailboxWatch] = []
    for i, item in enumerate(value):
        where = f"mailboxes[{i}]"
        if isinstance(item, str):
            item = {"address": item}
        m = _mapping(item, where, w, ("address", "folders"))
        address = _addresses(m.get("address"), f"{where}: field address", w)[0]
        folders = m.get("folders", list(DEFAULT_FOLDERS))
        folders = [folders] if isinstance(folders, str) else folders
        if not isinstance(folders, list) or not folders or not all(isinstance(f, str) and f.strip() for f in folders):
            raise w.error(f"{where}: field folders", f"expected a list of folder names, got {folders!r}")
        out.append(MailboxWatch(address, tuple(f.strip() for f in folders)))
    seen = [m.address for m in out]
    dupes = sorted({a for a in seen if seen.count(a) > 1})
    if dupes:
        raise w.error("mailboxes", f"mailbox {dupes[0]!r} is listed more than once")
    return tuple(out)


def _organisation(value: Any, w: _Where) -> Organisation:
    m = _mapping(value or {}, "organisation", w, ("domains", "people"))
    domains = m.get("domains", [])
    if not isinstance(domains, list) or not all(isinstance(d, str) and d for d in domains):
        raise w.error("organisation: field domains", f"expected a list of domains, got {domains!r}")
    people: list[Person] = []
    for i, p in enumerate(m.get("people", []) or []):
        pm = _mapping(p, f"organisation.people[{i}]", w, ("name", "address"))
        if not isinstance(pm.get("name"), str) or not pm["name"].strip():
            raise w.error(f"organisation.people[{i}]: field name", f"expected a display name, got {pm.get('name')!r}")
        address = _addresses(pm["address"], f"organisation.people[{i}]: field address", w)[0] if pm.get("address") else ""
        people.append(Person(pm["name"].strip(), address))
    return Organisation(tuple(d.lower() for d in domains), tuple(people))


def parse_config(data: Any, path: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed YAML document into a Config; ``env`` supplies secret values."""
    env = os.environ if env is None else env
    w = _Where(path)
    if data is None:
        data = {}
    top = _mapping(data, "top level", w, ("version", "organisation", "organization", "mailboxes", "alerts",
                                          "webhooks", "handlers", "rules", "apps", "tenants"))
    _refuse_inline_secrets(top, "", w)
    if top.get("version", VERSION) != VERSION:
        raise w.error("field version", f"this graphhook reads configuration version {VERSION}, got {top.get('version')!r}")
    org = _organisation(top.get("organisation", top.get("organization")), w)
    alerts = _mapping(top.get("alerts") or {}, "alerts", w, ("from",))
    alert_sender = _addresses(alerts["from"], "alerts: field from", w)[0] if alerts.get("from") else ""
    for section in ("webhooks", "handlers"):
        if not isinstance(top.get(section) or {}, Mapping):
            raise w.error(section, f"expected a mapping of names to definitions, got {top.get(section)!r}")
    webhooks = {str(n): _webhook(str(n), s, w, env) for n, s in (top.get("webhooks") or {}).items()}
    handlers = {str(n): _handler(str(n), s, w) for n, s in (top.get("handlers") or {}).items()}
    cfg = {"webhooks": webhooks, "handlers": handlers, "alert_sender": alert_sender, "tenants": "tenants" in top}
    rules: list[Rule] = []
    raw_rules = top.get("rules") or []
    if not isinstance(raw_rules, list):
        raise w.error("rules", f"expected a list of rules, got {raw_rules!r}")
    for i, spec in enumerate(raw_rules):
        name = spec.get("name") if isinstance(spec, Mapping) else None
        where = f"rule {name!r} (#{i + 1})" if name else f"rule #{i + 1}"
        m = _mapping(spec, where, w, ("name", "description", "when", "actions", "stop", "dry_run", "enabled"))
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise w.error(f"{where}: field name", f"expected a name of letters, digits, '-', '_' or '.', got {name!r}")
        if any(r.name == name for r in rules):
            raise w.error(f"{where}: field name", f"another rule is already named {name!r}")
        if "when" not in m:
            raise w.error(f"{where}: field when", "missing; say 'when: always' to match every message")
        try:
            when = compile_condition(m["when"], org)
        except ConfigError as exc:
            raise w.error(where, str(exc)) from exc
        actions = m.get("actions") or []
        if not isinstance(actions, list):
            raise w.error(f"{where}: field actions", f"expected a list of actions, got {actions!r}")
        parsed = tuple(_action(a, f"{where}: field actions[{j}]", w, cfg) for j, a in enumerate(actions))
        if not _bool(m.get("enabled", True), f"{where}: field enabled", w):
            continue
        rules.append(Rule(name, when, parsed, _bool(m.get("stop", False), f"{where}: field stop", w),
                          _bool(m.get("dry_run", False), f"{where}: field dry_run", w), str(m.get("description", ""))))
    tenants: tuple = ()
    if "tenants" in top:
        if top.get("mailboxes"):
            raise w.error("mailboxes", "with tenants:, list each tenant's mailboxes under it, not at the top level")
        tenants = parse_tenants(top["tenants"], w, parse_apps(top.get("apps"), w, env), tuple(rules), webhooks,
                                _mailboxes, alert_sender)
    elif top.get("apps"):
        raise w.error("apps", "apps: are used by tenants:; without tenants:, the app comes from AZURE_CLIENT_ID")
    return Config(path, _mailboxes(top.get("mailboxes") or [], w), org, tuple(rules),
                  MappingProxyType(webhooks), MappingProxyType(handlers), alert_sender, tenants)


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the YAML file at ``path``; raise ConfigError naming file, rule and field."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: configuration file not found (set GRAPHHOOK_CONFIG)") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration file: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from exc
    return parse_config(data, path, env)


def validate_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Full start-up check (``graphhook check --config-only``, ``release``): load, then import every handler."""
    config = load_config(path, env)
    for handler in config.handlers.values():
        resolve(handler, path=str(path))
    return config


_loaded: dict[str, tuple[float, Config]] = {}
DEFAULT_PATH = "graphhook.yaml"


def config_for(path: str) -> Config:
    """The process's configuration, loaded once (reloaded if the file changes). A missing file at the
    default path means "no rules" (the record trigger still runs); anywhere else it is an error."""
    try:
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        if path == DEFAULT_PATH:
            return EMPTY
        raise ConfigError(f"{path}: configuration file not found (set GRAPHHOOK_CONFIG)") from None
    cached = _loaded.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    try:
        config = validate_config(path)
    except ConfigError as exc:
        if cached is None:
            raise
        # An edit broke the file while we run: keep acting on the last good configuration, say so once.
        logging.getLogger("graphhook.config").error("%s; still using the configuration loaded before", exc)
        _loaded[path] = (mtime, cached[1])
        return cached[1]
    _loaded[path] = (mtime, config)
    return config


def tenant_config(settings: Any) -> Config:
    """The configuration as the tenant of ``settings`` sees it: its mailboxes, rules and webhooks only."""
    config = config_for(settings.config_path)
    return view(config, tenant_named(config, settings, settings.tenant)) if config.tenants else config
