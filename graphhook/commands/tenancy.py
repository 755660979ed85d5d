"""``--tenant NAME``: which configured tenant a command acts in (docs/tenants.md).

Every command that touches mail or subscriptions takes it. With one tenant configured (or none: the
``default`` tenant of ``AZURE_*``) it is optional and that tenant is used; with several it is required,
so a responder never acts in a tenant by accident. The command then acts with that tenant's token and
Graph client (:meth:`workers.runtime.Context.for_tenant`), which can reach only that tenant's directory.
"""

from __future__ import annotations

from typing import Any

from graphhook.core.errors import ConfigError


def add_tenant_flag(parser: Any, *,
                    help: str = "the configured tenant to act in (required when several are configured)") -> None:
    """Add ``--tenant NAME``."""
    parser.add_argument("--tenant", metavar="NAME", default=None, help=help)


def configured(settings: Any) -> tuple[Any, ...]:
    """The tenants of the configuration file (or the one ``default`` tenant of the environment)."""
    from workers.triggers.config import config_for
    from workers.triggers.tenants import tenants_of

    return tenants_of(config_for(settings.config_path), settings)


def declared(settings: Any) -> bool:
    """Whether the configuration declares ``tenants:`` (rather than the one ``default`` tenant)."""
    from workers.triggers.config import config_for

    return bool(config_for(settings.config_path).tenants)


def several(settings: Any) -> bool:
    """Whether more than one tenant is configured (tables then show a TENANT column)."""
    return len(configured(settings)) > 1


def chosen(settings: Any, name: str | None) -> Any:
    """The tenant ``--tenant`` names; ConfigError (exit 2) naming the configured ones when it is unknown,
    or when it is left out and several are configured."""
    tenants = configured(settings)
    names = ", ".join(t.name for t in tenants)
    if name:
        for tenant in tenants:
            if tenant.name == name.strip():
                return tenant
        raise ConfigError(f"no tenant is named {name!r} (configured: {names})")
    if len(tenants) > 1:
        raise ConfigError(f"{len(tenants)} tenants are configured ({names}): say which one with --tenant NAME")
    return tenants[0]


def context(settings: Any, name: str | None, ctx: Any = None) -> Any:
    """The runtime context of the tenant ``--tenant`` names (resolved before anything is built), with the
    credentials to call Graph in it (ConfigError naming what is missing)."""
    from workers import runtime

    tenant = chosen(settings, name)
    tenant.settings(settings).require_graph()
    found = (ctx or runtime.build(settings)).for_tenant(tenant.name)
    if found.settings.tenant_id.lower() != tenant.tenant_id.lower():  # never act in a directory not named
        raise ConfigError(f"tenant {tenant.name!r} is configured with directory {tenant.tenant_id!r} but would act "
                          f"in {found.settings.tenant_id!r}; a tenant under tenants: must not be named 'default'")
    return found


def flag(tenant: str) -> str:
    """`` --tenant NAME`` for a command printed for the user to run (nothing for ``default``)."""
    return "" if tenant == "default" else f" --tenant {tenant}"


def desired(tenant: Any) -> list[tuple[str, str]]:
    """(mailbox, folder) pairs the tenant watches: what its subscriptions must be."""
    return [(watch.address, folder) for watch in tenant.mailboxes for folder in watch.folders]
