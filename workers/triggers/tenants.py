"""Many tenants in one deployment: the YAML's ``apps:`` and ``tenants:`` sections (docs/tenants.md).

Without ``tenants:``, graphhook serves one tenant named ``default``: the app registration of
``AZURE_TENANT_ID`` / ``AZURE_CLIENT_ID`` / the credential, watching the top-level ``mailboxes:``,
with every rule and webhook. With ``tenants:``, each tenant names its directory id, the app it is
reached with (one of ``apps:``, or the environment's app when ``app`` is left out: one multi-tenant
app consented in every customer tenant), its mailboxes, and optionally the rules and webhooks that
apply to it (all of them when left out). Credentials are named by environment variable, never written
in the file, and read here once.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any, Mapping

from graphhook.core.logs import register_secret
from graphhook.core.settings import DEFAULT_TENANT, Settings
from workers.triggers.config_fields import _addresses, _mapping, _Where
from workers.triggers.model import App, Config, Rule, Tenant

TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")  # a metrics label, a CLI argument, a Redis key part
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


def _env_value(m: Mapping[str, Any], key: str, where: str, w: _Where, env: Mapping[str, str], *,
               required: bool) -> str:
    name = m.get(key)
    if name is None and not required:
        return ""
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise w.error(f"{where}: field {key}", f"expected an environment variable name such as CONTOSO_CLIENT_SECRET, got {name!r}")
    value = env.get(name, "")
    if not value:
        raise w.error(f"{where}: field {key}", f"environment variable {name} is unset")
    return value


def parse_apps(value: Any, w: _Where, env: Mapping[str, str]) -> dict[str, App]:
    """``apps:``: name → {client_id, secret_env | certificate_env [, certificate_password_env]}."""
    if not isinstance(value or {}, Mapping):
        raise w.error("apps", f"expected a mapping of names to app registrations, got {value!r}")
    apps: dict[str, App] = {}
    for name, spec in (value or {}).items():
        where = f"app {name!r}"
        m = _mapping(spec, where, w, ("client_id", "secret_env", "certificate_env", "certificate_password_env"))
        client_id = m.get("client_id")
        if not isinstance(client_id, str) or not _GUID.fullmatch(client_id.strip()):
            raise w.error(f"{where}: field client_id", f"expected the Application (client) ID, a GUID, got {client_id!r}")
        if ("secret_env" in m) == ("certificate_env" in m):
            raise w.error(where, "give exactly one of secret_env (a client secret) or certificate_env (a PEM file path)")
        secret = _env_value(m, "secret_env", where, w, env, required=False)
        path = _env_value(m, "certificate_env", where, w, env, required=False)
        password = _env_value(m, "certificate_password_env", where, w, env, required=False)
        for value_ in (secret, password):
            register_secret(value_)  # never logged, whatever the variable's name
        apps[str(name)] = App(str(name), client_id.strip().lower(), secret, path, password)
    return apps


def _names(value: Any, where: str, w: _Where, known: Mapping[str, Any] | list[str], what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise w.error(where, f"expected a list of {what} names, got {value!r}")
    for name in value:
        if name not in known:
            raise w.error(where, f"no {what} is named {name!r} (known: {', '.join(sorted(known)) or 'none'})")
    return tuple(value)


def parse_tenants(value: Any, w: _Where, apps: Mapping[str, App], rules: tuple[Rule, ...],
                  webhooks: Mapping[str, Any], parse_mailboxes: Any, alert_sender: str = "") -> tuple[Tenant, ...]:
    """``tenants:``: name → {tenant_id, app, mailboxes, rules, webhooks, alerts}; validated across tenants."""
    if not isinstance(value, Mapping) or not value:
        raise w.error("tenants", f"expected a mapping of tenant names to tenants, got {value!r}")
    out: list[Tenant] = []
    rule_names = [r.name for r in rules]
    for name, spec in value.items():
        where = f"tenant {name!r}"
        if not isinstance(name, str) or not TENANT_NAME.fullmatch(name):
            raise w.error(where, "a tenant name is 1-40 lower-case letters, digits or '-', starting with a letter or digit")
        if name == DEFAULT_TENANT:  # the name of the environment's own tenant, when no tenants: are declared
            raise w.error(where, f"{DEFAULT_TENANT!r} names the tenant of a configuration without tenants:; "
                                 "give this tenant its own name (e.g. the customer's)")
        m = _mapping(spec, where, w, ("tenant_id", "app", "mailboxes", "rules", "webhooks", "alerts"))
        tenant_id = m.get("tenant_id")
        if not isinstance(tenant_id, str) or not _GUID.fullmatch(tenant_id.strip()):
            raise w.error(f"{where}: field tenant_id", f"expected the Directory (tenant) ID, a GUID, got {tenant_id!r}")
        app_name = m.get("app")
        if app_name is not None and app_name not in apps:
            raise w.error(f"{where}: field app", f"no app is named {app_name!r} under apps: (known: {', '.join(sorted(apps)) or 'none'})")
        try:
            mailboxes = parse_mailboxes(m.get("mailboxes") or [], w)
        except Exception as exc:  # the mailbox parser names "mailboxes"; say which tenant's
            raise type(exc)(str(exc).replace(f"{w.path}: mailboxes", f"{w.path}: {where}: mailboxes", 1)) from exc
        chosen_rules = _names(m.get("rules"), f"{where}: field rules", w, rule_names, "rule")
        chosen_hooks = _names(m.get("webhooks"), f"{where}: field webhooks", w, webhooks, "webhook")
        alerts = _mapping(m.get("alerts") or {}, f"{where}: field alerts", w, ("from",))
        sender = _addresses(alerts["from"], f"{where}: field alerts.from", w)[0] if alerts.get("from") else ""
        tenant = Tenant(name, tenant_id.strip().lower(), apps[app_name] if app_name else None, mailboxes,
                        chosen_rules, chosen_hooks, sender)
        _check_rule_webhooks(tenant, rules, w)
        _check_alert_senders(tenant, rules, alert_sender, w)
        out.append(tenant)
    ids = [t.tenant_id for t in out]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise w.error("tenants", f"tenant id {dupes[0]!r} is listed under more than one tenant")
    owner: dict[str, str] = {}
    for tenant in out:
        for watch in tenant.mailboxes:
            if watch.address in owner:
                raise w.error("tenants", f"mailbox {watch.address!r} is listed under tenants {owner[watch.address]!r} "
                                         f"and {tenant.name!r}; a mailbox belongs to one tenant")
            owner[watch.address] = tenant.name
    return tuple(out)


def _check_rule_webhooks(tenant: Tenant, rules: tuple[Rule, ...], w: _Where) -> None:
    """A tenant's rules may only send to the tenant's webhooks: refuse the configuration otherwise."""
    if tenant.webhooks is None:
        return
    for rule in rules:
        if tenant.rules is not None and rule.name not in tenant.rules:
            continue
        for action in rule.actions:
            hook = action.options.get("name") if action.kind == "webhook" else None
            if hook and hook not in tenant.webhooks:
                raise w.error(f"tenant {tenant.name!r}", f"rule {rule.name!r} sends to webhook {hook!r}, which "
                                                         f"this tenant does not list under webhooks")


def _check_alert_senders(tenant: Tenant, rules: tuple[Rule, ...], alert_sender: str, w: _Where) -> None:
    """Every alert a tenant's rules send has a sender: its own from:, the tenant's alerts.from or the top level's."""
    if tenant.alert_sender or alert_sender:
        return
    for rule in rules:
        if tenant.rules is not None and rule.name not in tenant.rules:
            continue
        if any(a.kind == "alert" and not a.options.get("from") for a in rule.actions):
            raise w.error(f"tenant {tenant.name!r}", f"rule {rule.name!r} sends an alert without from:, and neither "
                                                     f"this tenant nor the top level sets alerts.from")


def tenants_of(config: Config, settings: Settings) -> tuple[Tenant, ...]:
    """The tenants served: the configuration's, or the one ``default`` tenant of the environment."""
    if config.tenants:
        return config.tenants
    return (Tenant(DEFAULT_TENANT, settings.tenant_id.lower(), None, config.mailboxes),)


def tenant_named(config: Config, settings: Settings, name: str) -> Tenant:
    """The tenant called ``name``; KeyError naming the known ones otherwise."""
    for tenant in tenants_of(config, settings):
        if tenant.name == name:
            return tenant
    raise KeyError(f"no tenant is named {name!r} (configured: {', '.join(t.name for t in tenants_of(config, settings))})")


def view(config: Config, tenant: Tenant) -> Config:
    """``config`` as one tenant sees it: its mailboxes, and only the rules and webhooks that apply to it."""
    if not config.tenants:
        return config
    rules = tuple(r for r in config.rules if tenant.rules is None or r.name in tenant.rules)
    hooks = {n: h for n, h in config.webhooks.items() if tenant.webhooks is None or n in tenant.webhooks}
    return Config(config.path, tenant.mailboxes, config.organisation, rules, MappingProxyType(hooks),
                  config.handlers, tenant.alert_sender or config.alert_sender, config.tenants)
