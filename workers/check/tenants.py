"""``graphhook check``, per tenant: a token, the roles it carries against those needed, one mailbox readable.

Without ``tenants:`` there is one tenant, ``default``, and the items keep their plain names (``token``,
``permission Mail.Read``, ``mailbox``). With ``tenants:``, each item names its tenant (``token contoso``,
``contoso: permission Mail.Read``, ``mailbox contoso``), and a token refused with AADSTS700016 says the
app is not consented there, with the admin consent link (:func:`workers.check.checklist.admin_consent_url`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import requests

from graphhook.core.settings import Settings
from workers.check.checklist import FAIL, OK, SKIP, WARN, Result, check_permissions, check_token, permissions_for

MAILBOX_TIMEOUT = 15  # s for the one read of a mailbox


def check_tenants(settings: Settings, config: Any | None, session: requests.Session | None = None) -> list[Result]:
    """The identity checks of every configured tenant (the environment's one without ``tenants:``)."""
    from workers.triggers.model import Config
    from workers.triggers.tenants import tenants_of, view

    named = bool(config is not None and config.tenants)
    tenants = tenants_of(config if config is not None else Config(), settings)
    results: list[Result] = []
    for tenant in tenants:
        s = tenant.settings(settings)
        token_result, token = check_token(s, session)
        results.append(replace(token_result, name=f"token {tenant.name}") if named else token_result)
        if not token:
            continue
        needs = permissions_for(view(config, tenant) if config is not None else None)
        for result in check_permissions(token, needs, config_known=config is not None):
            results.append(replace(result, name=f"{tenant.name}: {result.name}") if named else result)
        address = next((w.address for w in tenant.mailboxes), "")
        result = check_mailbox(s, token, address, session)
        results.append(replace(result, name=f"mailbox {tenant.name}") if named else result)
    return results


def check_mailbox(settings: Settings, token: str, address: str, session: requests.Session | None = None) -> Result:
    """Read one message id of ``address``'s inbox with ``token``: the app can read that tenant's mail."""
    name = "mailbox"
    if not address:
        return Result(name, SKIP, "no mailbox is configured for this tenant")
    where = f"tenant {settings.tenant} ({settings.tenant_id})"
    http = session or requests.Session()
    try:
        reply = http.get(f"{settings.graph_url}/users/{address}/mailFolders/inbox/messages",
                         params={"$top": "1", "$select": "id"}, headers={"Authorization": f"Bearer {token}"},
                         timeout=MAILBOX_TIMEOUT)
    except requests.RequestException as exc:
        return Result(name, WARN, f"could not read {address}: {type(exc).__name__}", "check GRAPH_URL and the network")
    if reply.ok:
        return Result(name, OK, f"{address} is readable in {where}")
    try:
        error = reply.json().get("error") or {}
    except ValueError:
        error = {}
    code = error.get("code") or str(reply.status_code)
    if reply.status_code == 404:
        return Result(name, FAIL, f"{address} was not found in {where} ({code})",
                      "check the address in GRAPHHOOK_CONFIG: Graph answers 'not found' for a typo and for a\n"
                      "mailbox of another tenant alike; list it under the tenant it belongs to.")
    if reply.status_code in (401, 403):
        return Result(name, FAIL, f"reading {address} in {where} was refused ({reply.status_code} {code})",
                      "grant Mail.Read (application) with admin consent in that tenant; if an application access\n"
                      "policy (New-ApplicationAccessPolicy) limits the app, include this mailbox in its group.")
    return Result(name, WARN, f"reading {address} in {where} answered {reply.status_code} {code}",
                  "retry in a few minutes; if it persists, see https://status.cloud.microsoft")
