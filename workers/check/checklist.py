"""``graphhook check``: a checklist of everything a deployment needs, each failure with its fix.

The checks are plain functions returning :class:`Result` values; the command
(:mod:`graphhook.commands.check`) only runs them and prints the report. This
module covers the identity side — a token from the Microsoft identity platform
and the application permissions (``roles``) it carries; the public URL, Redis
and the configuration file are in :mod:`workers.check.infra`.

Microsoft's token errors are turned into fixes by their AADSTS code
(https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
Secrets never appear in a result: every text is scrubbed of them before it is
stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import jwt
import msal
import requests

from graphhook.core.errors import AuthError, ConfigError
from graphhook.core.settings import DEFAULT_TENANT, Settings
from workers.graph.auth import TokenProvider

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
_MARK = {OK: "[ ok ]", WARN: "[warn]", FAIL: "[FAIL]", SKIP: "[skip]"}

PORTAL_APP = "Azure portal → Microsoft Entra ID → App registrations → your app"


@dataclass(frozen=True)
class Result:
    """One line of the checklist: what was checked, what was found and, unless it passed, the fix."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.status not in _MARK:
            raise ValueError(f"status must be one of {sorted(_MARK)}, got {self.status!r}")


@dataclass
class Report:
    """The whole checklist; ``failed`` decides the exit status."""

    results: list[Result] = field(default_factory=list)
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def add(self, result: Result) -> Result:
        """Append ``result`` with any secret value blanked out of its texts."""
        clean = Result(result.name, result.status, self._scrub(result.detail), self._scrub(result.fix))
        self.results.append(clean)
        return clean

    def extend(self, results: Iterable[Result]) -> None:
        """Append several results."""
        for result in results:
            self.add(result)

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    @property
    def failed(self) -> bool:
        """True when any check failed."""
        return any(r.status == FAIL for r in self.results)

    def render(self) -> str:
        """The checklist as text, one item per line, each fix indented under its item."""
        lines = []
        width = max((len(r.name) for r in self.results), default=0)
        for r in self.results:
            lines.append(f"{_MARK[r.status]} {r.name.ljust(width)}  {r.detail}")
            for i, fix_line in enumerate(r.fix.splitlines()):
                lines.append(f"       {' ' * width}  {'fix: ' if i == 0 else '     '}{fix_line}")
        counts = {s: sum(r.status == s for r in self.results) for s in (OK, WARN, FAIL, SKIP)}
        summary = f"{counts[OK]} passed, {counts[WARN]} warning(s), {counts[FAIL]} failed"
        if counts[SKIP]:
            summary += f", {counts[SKIP]} skipped"
        lines.append("")
        lines.append(summary)
        return "\n".join(lines)


# --- the token --------------------------------------------------------------------------

def _token_fix(code: str, error_codes: tuple[int, ...], settings: Settings) -> tuple[str, str]:
    """(what it means, how to fix it) for one of Microsoft's token errors."""
    tenant, client = settings.tenant_id, settings.client_id
    secret = ("AZURE_CLIENT_SECRET" if settings.tenant == DEFAULT_TENANT else
              f"the secret of tenant {settings.tenant}'s app (the variable its secret_env names, or AZURE_CLIENT_SECRET)")
    if 90002 in error_codes or code == "invalid_tenant":
        return (f"tenant {tenant!r} was not found (AADSTS90002)",
                f"AZURE_TENANT_ID is wrong: copy the 'Directory (tenant) ID' from the Overview page of\n"
                f"{PORTAL_APP}. If you use a national cloud, also set AZURE_AUTHORITY_HOST.")
    if 700016 in error_codes and settings.tenant != DEFAULT_TENANT:  # a tenant of tenants: — the app is not consented
        url = admin_consent_url(settings)
        return (f"app {client} is not consented in tenant {settings.tenant} ({tenant}) — an admin must grant consent: "
                f"{url}", f"a Global Administrator of tenant {settings.tenant} opens\n{url}\nand accepts the "
                f"permissions; or fix tenant_id / app of tenant {settings.tenant} in GRAPHHOOK_CONFIG.")
    if 700016 in error_codes or code == "unauthorized_client":
        return (f"application {client!r} was not found in tenant {tenant!r} (AADSTS700016)",
                f"AZURE_CLIENT_ID is wrong, or the app is registered in another tenant: copy the\n"
                f"'Application (client) ID' from the Overview page of {PORTAL_APP},\n"
                f"and check that AZURE_TENANT_ID is the 'Directory (tenant) ID' shown next to it.")
    if 7000222 in error_codes:
        return ("the client secret has expired (AADSTS7000222)",
                f"create a new client secret in {PORTAL_APP} → Certificates & secrets,\n"
                f"set {secret} to its Value, and note the new expiry date.")
    if 7000215 in error_codes:
        return ("Microsoft rejected the client secret (AADSTS7000215 invalid_client)",
                f"{secret} is wrong. Did you paste the secret ID instead of its value?\n"
                f"In {PORTAL_APP} → Certificates & secrets, the 'Value' column is the secret\n"
                f"(shown only right after creation); 'Secret ID' is not. If the value is lost, create a new secret.")
    if 700027 in error_codes or 700023 in error_codes or 50027 in error_codes:
        return (f"Microsoft rejected the certificate credential (AADSTS{error_codes[0] if error_codes else 700027})",
                f"upload the public certificate of AZURE_CLIENT_CERTIFICATE_PATH to {PORTAL_APP}\n"
                f"→ Certificates & secrets → Certificates, and check that the PEM file holds the matching private key.")
    if 7000218 in error_codes:
        return ("no credential was sent (AADSTS7000218)",
                "set AZURE_CLIENT_SECRET (the secret's value) or AZURE_CLIENT_CERTIFICATE_PATH.")
    codes = ", ".join(f"AADSTS{c}" for c in error_codes) or "no AADSTS code"
    return (f"Microsoft refused a token: {code} ({codes})",
            f"look the code up at https://login.microsoftonline.com/error?code={error_codes[0] if error_codes else ''}")


def admin_consent_url(settings: Settings) -> str:
    """Where an admin of the tenant grants the app its permissions (the admin consent endpoint)."""
    return f"{settings.authority_host}/{settings.tenant_id}/adminconsent?client_id={settings.client_id}"


def _tenant_problem(settings: Settings, session: requests.Session | None) -> tuple[str, tuple[int, ...]] | None:
    """Ask the authority why MSAL could not load its configuration (it hides Microsoft's error)."""
    http = session or requests.Session()
    try:
        reply = http.get(f"{settings.authority}/v2.0/.well-known/openid-configuration", timeout=10)
        body = reply.json()
    except (requests.RequestException, ValueError):
        return None
    if reply.ok or "error" not in body:
        return None
    return body["error"], tuple(body.get("error_codes") or ())


def check_token(settings: Settings, session: requests.Session | None = None) -> tuple[Result, str | None]:
    """Get an application token through MSAL; on failure, say which setting is wrong."""
    name = "token"
    try:
        settings.require_graph()
    except ConfigError as exc:
        return Result(name, FAIL, "the app registration is not configured",
                      f"set these variables (see deploy/env.example):\n{exc}".replace("missing environment variable(s):\n", "")), None
    kind = "certificate" if settings.client_certificate_path else "client secret"
    try:
        token = TokenProvider(settings, None, session).token()
    except AuthError as exc:
        detail, fix = _token_fix(exc.code, exc.error_codes, settings)
        return Result(name, FAIL, detail, fix), None
    except ConfigError as exc:
        return Result(name, FAIL, str(exc), "point AZURE_CLIENT_CERTIFICATE_PATH at a readable PEM file "
                                            "holding the private key and the certificate"), None
    except ValueError as exc:
        # MSAL raises ValueError when the authority's OpenID configuration cannot be loaded.
        problem = _tenant_problem(settings, session)
        if problem:
            detail, fix = _token_fix(problem[0], problem[1], settings)
            return Result(name, FAIL, detail, fix), None
        return Result(name, FAIL, f"the authority {settings.authority} did not answer as Microsoft's does",
                      f"check AZURE_AUTHORITY_HOST and AZURE_TENANT_ID ({str(exc).splitlines()[0][:120]})"), None
    except msal.exceptions.MsalServiceError as exc:
        return Result(name, FAIL, f"the login endpoint failed ({str(exc)[:80]})",
                      "Microsoft's side answered with an error page: retry in a few minutes; if it persists,\n"
                      "check AZURE_AUTHORITY_HOST and https://status.cloud.microsoft"), None
    except requests.exceptions.SSLError:
        return Result(name, FAIL, f"TLS to {settings.authority_host} failed: certificate not trusted",
                      "check REQUESTS_CA_BUNDLE (it replaces the system CA list when set)"), None
    except requests.RequestException as exc:
        return Result(name, FAIL, f"{settings.authority_host} cannot be reached ({type(exc).__name__})",
                      "check AZURE_AUTHORITY_HOST, DNS and any outbound firewall or proxy"), None
    return Result(name, OK, f"got an application token for {settings.client_id} ({kind})"), token


# --- permissions --------------------------------------------------------------------------

@dataclass(frozen=True)
class Permission:
    """An application permission, what graphhook uses it for and what breaks without it."""

    name: str
    used_for: str
    breaks: str
    satisfied_by: tuple[str, ...] = ()


PERMISSIONS: dict[str, Permission] = {p.name: p for p in (
    Permission("Mail.Read", "subscribing to mailboxes and fetching messages with their attachments",
               "no subscription can be created and no message can be fetched", ("Mail.ReadWrite",)),
    Permission("User.Read.All", "turning mailbox addresses into user ids for subscriptions",
               "'subscriptions create --mailbox ADDRESS' and the renewer fail with 403"),
    Permission("Mail.ReadWrite", "actions that change mail: move, delete, mark read, categorize, purge",
               "those actions fail with 403 (the message is still fetched and other triggers still run)"),
    Permission("Mail.Send", "forward, reply and send actions",
               "those actions fail with 403"),
    Permission("MailboxSettings.Read", "handlers that read mailbox settings (time zone, automatic replies)",
               "those reads fail with 403", ("MailboxSettings.ReadWrite",)),
    Permission("MailboxSettings.ReadWrite", "handlers that change mailbox settings (automatic replies)",
               "those changes fail with 403"),
)}

ALWAYS_NEEDED = ("Mail.Read", "User.Read.All")
BASIC_ROLES = ("Mail.ReadBasic", "Mail.ReadBasic.All")
# Which permission each rule action of workers.triggers.config needs (webhook and handler need none).
ACTION_PERMISSIONS = {
    "move": "Mail.ReadWrite", "copy": "Mail.ReadWrite", "delete": "Mail.ReadWrite", "mark_read": "Mail.ReadWrite",
    "categorise": "Mail.ReadWrite", "flag": "Mail.ReadWrite",
    "forward": "Mail.Send", "reply": "Mail.Send", "alert": "Mail.Send",
}


def permissions_for(config: Any | None) -> dict[str, list[str]]:
    """Permission → the configured features that need it (``config`` is a ``workers.triggers.config.Config``)."""
    needs: dict[str, list[str]] = {p: ["receiving mail"] for p in ALWAYS_NEEDED}
    for rule in getattr(config, "rules", ()) or ():
        for action in rule.actions:
            perm = ACTION_PERMISSIONS.get(action.kind)
            if perm:
                needs.setdefault(perm, []).append(f"rule {rule.name!r} ({action.kind})")
    return needs


def token_roles(token: str) -> list[str]:
    """The ``roles`` claim of an access token (read, not verified: Graph verifies it)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return []
    roles = claims.get("roles") or []
    return [str(r) for r in roles] if isinstance(roles, list) else []


def check_permissions(token: str, needs: Mapping[str, list[str]] | None = None, *,
                      config_known: bool = True) -> list[Result]:
    """One result per permission graphhook knows: missing and needed fails, missing and unneeded is skipped.

    ``needs`` comes from :func:`permissions_for`; when the configuration could not be read
    (``config_known=False``), permissions no rule asked for are reported missing as warnings.
    """
    needs = needs if needs is not None else permissions_for(None)
    roles = set(token_roles(token))
    grant_fix = ("in {portal} → API permissions: Add a permission → Microsoft Graph →\n"
                 "Application permissions → {perm}, then 'Grant admin consent'.")
    results = []
    for perm in PERMISSIONS.values():
        label = f"permission {perm.name}"
        granted = roles & {perm.name, *perm.satisfied_by}
        users = needs.get(perm.name, [])
        if granted:
            via = "" if perm.name in granted else f" (through {sorted(granted)[0]})"
            results.append(Result(label, OK, f"granted{via}: {perm.used_for}"))
        elif users:
            shown = ", ".join(users[:3]) + (f" and {len(users) - 3} more" if len(users) > 3 else "")
            results.append(Result(label, FAIL, f"missing — needed by {shown}: without it {perm.breaks}",
                                  grant_fix.format(portal=PORTAL_APP, perm=perm.name)))
        elif not config_known:
            results.append(Result(label, WARN, f"missing — used for {perm.used_for}; without it {perm.breaks}",
                                  grant_fix.format(portal=PORTAL_APP, perm=perm.name)))
        else:
            results.append(Result(label, SKIP, f"not granted; no configured feature needs it (it is for {perm.used_for})"))
    basic = sorted(roles & set(BASIC_ROLES))
    if basic:
        results.append(Result(f"permission {'/'.join(basic)}", WARN,
                              f"{' and '.join(basic)} is granted: it gives messages without body or attachments, "
                              "and where it is what applies, attachments and sub-folders are blocked; "
                              "graphhook needs no *ReadBasic* permission",
                              f"remove {' and '.join(basic)} in {PORTAL_APP} → API permissions\n"
                              "(… → Remove permission), then 'Grant admin consent' again."))
    if not roles:
        results.append(Result("permissions", FAIL, "the token carries no application permissions (no 'roles' claim)",
                              "add the Microsoft Graph *Application* permissions (not Delegated) in API permissions,\n"
                              "then 'Grant admin consent'; new grants take a few minutes to reach new tokens."))
    return results
