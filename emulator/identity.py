"""Microsoft identity platform endpoints that MSAL's ConfidentialClientApplication uses.

Follows the v2.0 client-credentials flow
(https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow):
tenant-scoped OpenID discovery, the token endpoint (client secret or
certificate assertion) and the signing keys. Errors carry the AADSTS codes
Microsoft returns for the same mistakes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Blueprint, current_app, jsonify, request

GRAPH_AUDIENCE = "https://graph.microsoft.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
# The app id Microsoft Graph's change-notification publisher signs as (graph-protocol.md §4).
GRAPH_NOTIFICATION_APPID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
TOKEN_LIFETIME = 3599  # seconds, as in Microsoft's replies
CLOCK_SKEW = 300  # s of leeway on nbf/exp, as Microsoft's validators allow
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class App:
    """An app registration: credentials and the application permissions (roles) it asks for.

    ``home_tenant`` is the tenant it is registered in; a ``multi_tenant`` app (sign-in audience
    "AzureADMultipleOrgs") can also be consented in other tenants.
    """

    client_id: str
    secret: str | None = None
    secret_expires: dt.datetime | None = None
    certificates: list[x509.Certificate] = field(default_factory=list)
    disabled: bool = False
    roles: tuple[str, ...] = ("Mail.Read", "Mail.ReadWrite", "Mail.Send", "MailboxSettings.ReadWrite", "User.Read.All")
    home_tenant: str = ""
    multi_tenant: bool = False

    def thumbprints(self) -> dict[str, x509.Certificate]:
        """Registered certificates by base64url SHA-1 (``x5t``) and SHA-256 (``x5t#S256``) thumbprint."""
        out = {}
        for cert in self.certificates:
            for algorithm in (hashes.SHA1(), hashes.SHA256()):
                out[base64.urlsafe_b64encode(cert.fingerprint(algorithm)).decode().rstrip("=")] = cert
        return out


class SigningKey:
    """The RSA key that signs access tokens and validation tokens, published as JWKS."""

    def __init__(self) -> None:
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode().rstrip("=")

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})

    def jwks(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "x5t": self.kid, "use": "sig"})
        return {"keys": [jwk]}



class Directory:
    """The tenants, the app registrations, the consents between them and the key that signs their tokens.

    Microsoft signs every tenant's tokens with the same published keys; ``tid`` and ``iss`` say which
    tenant a token is for. An app can get a token in a tenant only where it has a service principal
    (it was consented there): ``consents[(client_id, tenant_id)]`` holds the application permissions
    granted, or None for "what the app registration asks for" (``App.roles``, read when a token is issued).
    ``tenant_id`` is the first tenant, the one of the single-tenant API.
    """

    def __init__(self, tenant_id: str, clock: Any = None) -> None:
        from .clock import as_clock

        self.clock = as_clock(clock)
        self.tenant_id = tenant_id
        self.tenant_ids: list[str] = [tenant_id]
        self.apps: dict[str, App] = {}
        self.consents: dict[tuple[str, str], tuple[str, ...] | None] = {}
        self.key = SigningKey()
        self.tokens_issued = 0
        self._lock = threading.Lock()

    def has_tenant(self, tenant_id: str) -> bool:
        return tenant_id in self.tenant_ids

    def add_tenant(self, tenant_id: str) -> str:
        if not self.has_tenant(tenant_id):
            self.tenant_ids.append(tenant_id)
        return tenant_id

    def add_app(self, app: App) -> App:
        """Register ``app`` in its home tenant (the first tenant by default), consented there."""
        app.home_tenant = app.home_tenant or self.tenant_id
        if not self.has_tenant(app.home_tenant):
            raise ValueError(f"unknown tenant {app.home_tenant!r}")
        self.apps[app.client_id] = app
        self.consents.setdefault((app.client_id, app.home_tenant), None)
        return app

    def consent(self, client_id: str, tenant_id: str, roles: tuple[str, ...] | None = None) -> None:
        """Admin consent: a service principal for the app in the tenant, with ``roles`` (None: what the app asks for)."""
        app = self.apps.get(client_id)
        if app is None or not self.has_tenant(tenant_id):
            raise ValueError(f"unknown app {client_id!r} or tenant {tenant_id!r}")
        if tenant_id != app.home_tenant and not app.multi_tenant:
            raise ValueError(f"app {client_id!r} is single-tenant (home {app.home_tenant!r}): it cannot be consented in {tenant_id!r}")
        self.consents[(client_id, tenant_id)] = tuple(roles) if roles is not None else None

    def revoke(self, client_id: str, tenant_id: str) -> bool:
        """Remove the app's service principal from the tenant; True if it had one."""
        return self.consents.pop((client_id, tenant_id), False) is not False

    def consented(self, client_id: str, tenant_id: str) -> bool:
        return (client_id, tenant_id) in self.consents

    def roles_in(self, app: App, tenant_id: str) -> tuple[str, ...]:
        """The application permissions the app holds in the tenant (none without consent)."""
        if not self.consented(app.client_id, tenant_id):
            return ()
        granted = self.consents[(app.client_id, tenant_id)]
        return tuple(app.roles) if granted is None else granted

    def issue_access_token(self, app: App, now: float | None = None, *, tenant_id: str | None = None) -> str:
        """An app-only access token for Graph in ``tenant_id`` (the first tenant by default), dated by the emulator's clock."""
        now = int(now if now is not None else self.clock.time())
        tenant_id = tenant_id or self.tenant_id
        with self._lock:
            self.tokens_issued += 1
        return self.key.sign({
            "aud": GRAPH_AUDIENCE,
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "iat": now, "nbf": now, "exp": now + TOKEN_LIFETIME,
            "appid": app.client_id, "appidacr": "1", "idtyp": "app",
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, app.client_id)),
            "roles": list(self.roles_in(app, tenant_id)), "sub": app.client_id, "tid": tenant_id, "ver": "1.0",
        })

    def issue_validation_token(self, client_id: str, now: float | None = None, *, tenant_id: str | None = None) -> str:
        """A rich-notification validation token (graph-protocol.md §4) for one app and tenant, dated by the emulator's clock."""
        now = int(now if now is not None else self.clock.time())
        tenant_id = tenant_id or self.tenant_id
        return self.key.sign({
            "aud": client_id,
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "iat": now, "nbf": now, "exp": now + 3600,
            "appid": GRAPH_NOTIFICATION_APPID, "appidacr": "2",
            "idp": f"https://sts.windows.net/{tenant_id}/",
            "tid": tenant_id, "ver": "1.0",
        })

    def verify_access_token(self, token: str) -> dict[str, Any]:
        """Check signature and audience, then ``nbf``/``exp`` against the emulator's clock."""
        claims = jwt.decode(token, self.key.private.public_key(), algorithms=["RS256"], audience=GRAPH_AUDIENCE,
                            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False})
        now = self.clock.time()
        if claims.get("exp", 0) <= now - CLOCK_SKEW:
            raise jwt.ExpiredSignatureError("Signature has expired")
        if claims.get("nbf", 0) > now + CLOCK_SKEW:
            raise jwt.ImmatureSignatureError("The token is not yet valid (nbf)")
        return claims


def aad_error(status: int, error: str, code: int, description: str):
    """Microsoft's token-endpoint error body (error, error_description with AADSTS code, ...)."""
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {now}",
        "error_codes": [code],
        "timestamp": now,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return jsonify(body), status


bp = Blueprint("identity", __name__)


def _directory() -> Directory:
    return current_app.config["EMULATOR"].directory


def _base() -> str:
    return request.host_url.rstrip("/")


@bp.get("/<tenant>/v2.0/.well-known/openid-configuration")
def openid_configuration(tenant: str):
    directory = _directory()
    if not directory.has_tenant(tenant) and tenant not in ("common", "organizations"):
        return aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.")
    base, tid = _base(), tenant if directory.has_tenant(tenant) else "{tenantid}"
    return jsonify({
        "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "issuer": f"{base}/{tid}/v2.0",
        "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
        "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
        "tenant_region_scope": "EU",
    })


@bp.get("/<tenant>/.well-known/openid-configuration")
def openid_configuration_v1(tenant: str):
    """The v1 document the Graph SDKs use to find the keys of validation tokens."""
    base = _base()
    return jsonify({
        "issuer": f"https://sts.windows.net/{tenant if _directory().has_tenant(tenant) else '{tenantid}'}/",
        "jwks_uri": f"{base}/{tenant}/discovery/keys",
        "token_endpoint": f"{base}/{tenant}/oauth2/token",
        "id_token_signing_alg_values_supported": ["RS256"],
    })


@bp.get("/<tenant>/discovery/keys")
@bp.get("/<tenant>/discovery/v2.0/keys")
def keys(tenant: str):
    return jsonify(_directory().key.jwks())


def _check_assertion(app: App, assertion: str, audience: str):
    """Verify a certificate client assertion (RFC 7523; Microsoft's certificate credentials).

    MSAL signs with PS256 and ``x5t#S256`` when it knows the certificate, else RS256 and ``x5t``.
    The assertion's ``exp``/``nbf`` are checked against wall time: the client dates it by its own
    clock, which the emulator's injectable clock does not move.
    """
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        return 50027, "JWT token is invalid or malformed."
    thumb = header.get("x5t#S256") or header.get("x5t")
    cert = app.thumbprints().get((thumb or "").rstrip("="))
    if cert is None:
        return 700027, f"The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{thumb}']"
    try:
        claims = jwt.decode(assertion, cert.public_key(), algorithms=["RS256", "PS256"], audience=audience,
                            options={"require": ["exp", "aud", "iss", "sub"]}, leeway=CLOCK_SKEW)
    except jwt.InvalidAudienceError:
        return 700027, f"Client assertion contains an invalid audience; expected '{audience}'."  # code inferred
    except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
        return 700024, "Client assertion is not within its valid time range."
    except jwt.PyJWTError as exc:
        return 700027, f"Client assertion failed signature validation. ({exc.__class__.__name__})"
    if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
        return 700023, "Client assertion audience or issuer claim does not match."
    return None


@bp.post("/<tenant>/oauth2/v2.0/token")
def token(tenant: str):
    emulator = current_app.config["EMULATOR"]
    directory = emulator.directory
    emulator.faults.maybe_fail("token", request.method, request.path)
    form = request.form
    if not directory.has_tenant(tenant):
        return aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.")
    if form.get("grant_type") != "client_credentials":
        return aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
    client_id = form.get("client_id", "")
    if not client_id:
        return aad_error(400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
    scope = form.get("scope", "")
    if GRAPH_SCOPE not in scope.split():
        return aad_error(400, "invalid_scope", 1002012, f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
    app = directory.apps.get(client_id)
    if app is not None and app.disabled:
        return aad_error(400, "unauthorized_client", 7000112, f"Application '{client_id}' is disabled.")
    if app is None or not directory.consented(client_id, tenant):
        # No service principal in this tenant (never consented, or consent revoked): AADSTS700016.
        return aad_error(400, "unauthorized_client", 700016, f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.")
    secret = form.get("client_secret")
    assertion = form.get("client_assertion")
    if secret is not None:
        # A wrong secret is HTTP 401 invalid_client AADSTS7000215: that is what Microsoft really
        # answers (observed), although RFC 6749 §5.2 would allow 400 as well.
        if app.secret is None or not hmac.compare_digest(secret.encode(), app.secret.encode()):
            return aad_error(401, "invalid_client", 7000215, f"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'.")
        if app.secret_expires and app.secret_expires < directory.clock.now():
            return aad_error(401, "invalid_client", 7000222, f"The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app.")
    elif assertion is not None:
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            return aad_error(400, "invalid_request", 90014, "The request body must contain the following parameter: 'client_assertion_type'.")
        problem = _check_assertion(app, assertion, request.base_url)
        if problem:
            code, text = problem
            return aad_error(401, "invalid_client", code, text)
    else:
        return aad_error(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
    access = directory.issue_access_token(app, tenant_id=tenant)
    return jsonify({"token_type": "Bearer", "expires_in": TOKEN_LIFETIME, "ext_expires_in": TOKEN_LIFETIME, "access_token": access})
