"""Rich notifications: verify ``validationTokens``, then check ``dataSignature``, then decrypt.

Pure apart from fetching signing keys (done by :class:`TokenValidator` through an
injectable JWKS client), so the receiver and the workers share it.

- Validation tokens: https://learn.microsoft.com/graph/change-notifications-with-resource-data#validating-the-authenticity-of-notifications
- Decryption: https://learn.microsoft.com/graph/change-notifications-with-resource-data#decrypting-resource-data-from-change-notifications
  (graph-protocol.md §4): RSA-OAEP-SHA1 unwraps a 32-byte key; HMAC-SHA256(key, data)
  must equal ``dataSignature``; AES-256-CBC with PKCS7 and IV = key[:16].
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import pkcs12

from graphhook.core.errors import ConfigError, DecryptionError, RejectedNotification

# The app id Microsoft Graph's notification publisher signs as; the SDK helper forgets to check it.
GRAPH_NOTIFICATION_APPID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
CLOCK_SKEW = 300  # s; Microsoft.IdentityModel's default ClockSkew, which the .NET SDK validates with
JWKS_LIFESPAN = 3600  # s signing keys are cached; an unknown kid triggers a refetch anyway
MAX_TOKENS = 50  # per POST; Graph sends one per app+tenant pair, so more is not Graph
_TOKEN_CACHE_SIZE = 256  # verified tokens remembered until they expire (one per app+tenant pair)


# --- decryption keys --------------------------------------------------------------------------

@dataclass(frozen=True)
class DecryptionKey:
    """A private key for ``encryptedContent``, known by its ``encryptionCertificateId`` (and thumbprint)."""

    certificate_id: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    thumbprint: str = ""  # uppercase hex SHA-1 of the certificate, when the file holds one


def load_key_file(path: str | Path, *, password: str | None = None, certificate_id: str = "") -> DecryptionKey:
    """Load a PEM (private key, optionally with its certificate) or PKCS#12 file; raise ConfigError if unusable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {str(path)!r}: {exc.strerror}") from exc
    secret = password.encode() if password else None
    cert: x509.Certificate | None = None
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, secret)
            if b"BEGIN CERTIFICATE" in data:
                cert = x509.load_pem_x509_certificate(data[data.index(b"-----BEGIN CERTIFICATE"):])
        else:
            key, cert, _ = pkcs12.load_key_and_certificates(data, secret)
    except (ValueError, TypeError) as exc:
        # cryptography says "Invalid password or PKCS12 data" / "Bad decrypt"; keep it, it names no secret.
        raise ConfigError(f"cannot load private key from {str(path)!r} (wrong password or not PEM/PKCS#12): {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{str(path)!r} does not hold an RSA private key")
    thumb = cert.fingerprint(hashes.SHA1()).hex().upper() if cert is not None else ""
    return DecryptionKey(certificate_id or thumb or path.stem, key, thumb)


class KeyRing:
    """Several decryption keys at once (rotation); looked up by certificate id, else by thumbprint."""

    def __init__(self, keys: Iterable[DecryptionKey] = ()) -> None:
        self.keys = tuple(keys)
        self._by_id = {k.certificate_id: k for k in self.keys}
        self._by_thumb = {k.thumbprint: k for k in self.keys if k.thumbprint}

    @classmethod
    def from_spec(cls, spec: str, *, password: str | None = None) -> "KeyRing":
        """Parse ``GRAPHHOOK_ENCRYPTION_KEYS``: comma-separated ``[certificateId=]path`` entries."""
        keys = []
        for entry in (e.strip() for e in spec.replace("\n", ",").split(",")):
            if not entry:
                continue
            cert_id, sep, path = entry.rpartition("=") if "=" in entry else ("", "", entry)
            keys.append(load_key_file(path.strip(), password=password, certificate_id=cert_id.strip()))
        return cls(keys)

    def find(self, certificate_id: str, thumbprint: str = "") -> DecryptionKey:
        """The key for this content; DecryptionError naming the id when none is loaded."""
        key = self._by_id.get(certificate_id) or self._by_thumb.get((thumbprint or "").upper())
        if key is None:
            raise DecryptionError(f"no decryption key loaded for encryptionCertificateId {certificate_id[:128]!r} "
                                  f"(thumbprint {thumbprint[:64]!r}); loaded: {sorted(self._by_id)!r}")
        return key

    def __len__(self) -> int:
        return len(self.keys)


def _b64(encrypted: Mapping[str, Any], name: str) -> bytes:
    value = encrypted.get(name)
    if not isinstance(value, str) or not value:
        raise DecryptionError(f"encryptedContent has no {name}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecryptionError(f"encryptedContent.{name} is not base64") from exc


def decrypt_content(encrypted: Mapping[str, Any], keys: KeyRing | DecryptionKey) -> dict[str, Any]:
    """Check ``dataSignature`` and decrypt ``data`` into the resource; DecryptionError on any failure."""
    if not isinstance(encrypted, Mapping):
        raise DecryptionError("encryptedContent must be an object")
    data, signature, data_key = _b64(encrypted, "data"), _b64(encrypted, "dataSignature"), _b64(encrypted, "dataKey")
    cert_id = str(encrypted.get("encryptionCertificateId") or "")
    key = keys if isinstance(keys, DecryptionKey) else keys.find(cert_id, str(encrypted.get("encryptionCertificateThumbprint") or ""))
    try:
        symmetric = key.private_key.decrypt(data_key, asym_padding.OAEP(
            mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    except ValueError as exc:
        raise DecryptionError(f"dataKey cannot be decrypted with the key for {key.certificate_id!r}: "
                              "wrong key for this content") from exc
    if len(symmetric) != 32:
        raise DecryptionError(f"dataKey holds {len(symmetric)} bytes, expected a 32-byte AES key")
    expected = hmac.new(symmetric, data, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise DecryptionError("dataSignature does not match: the content was altered, so it is not decrypted")
    if not data or len(data) % 16:
        raise DecryptionError("encryptedContent.data is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(symmetric), modes.CBC(symmetric[:16])).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(decryptor.update(data) + decryptor.finalize()) + unpadder.finalize()
        resource = json.loads(plain.decode("utf-8"))
    except ValueError as exc:
        raise DecryptionError("decrypted data is not valid UTF-8 JSON") from exc
    if not isinstance(resource, dict):
        raise DecryptionError("decrypted data is not a JSON object")
    return resource


# --- validation tokens ------------------------------------------------------------------------

def ssl_context(ca_bundle: str = "") -> ssl.SSLContext:
    """TLS context for fetching signing keys: the system store, or ``REQUESTS_CA_BUNDLE`` when set."""
    return ssl.create_default_context(cafile=ca_bundle or None)


class OpenIdJwks:
    """Signing keys found through an OpenID configuration document (``jwks_uri``), both cached."""

    def __init__(self, config_url: str, *, ca_bundle: str = "", timeout: float = 2.0) -> None:
        self.config_url = config_url
        self._context = ssl_context(ca_bundle)
        self._timeout = timeout
        self._client: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def _jwks_client(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._client is None:
                import urllib.request

                try:
                    with urllib.request.urlopen(self.config_url, timeout=self._timeout, context=self._context) as r:
                        uri = json.load(r)["jwks_uri"]
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    raise jwt.PyJWKClientConnectionError(
                        f"cannot read jwks_uri from {self.config_url!r}: {type(exc).__name__}") from exc
                self._client = jwt.PyJWKClient(uri, cache_keys=True, lifespan=JWKS_LIFESPAN,
                                               timeout=self._timeout, ssl_context=self._context)
            return self._client

    def key_for(self, token: str) -> Any:
        """The public key that signed ``token`` (PyJWKClientConnectionError if keys cannot be fetched)."""
        return self._jwks_client().get_signing_key_from_jwt(token).key


class SigningKeysUnavailable(DecryptionError):
    """The signing keys could not be fetched: retry later rather than reject."""


class TokenValidator:
    """Validates every ``validationTokens`` JWT of a POST, as Microsoft requires and a little stricter.

    A token is for one app (``aud``) and one tenant (its issuer); Graph sends one per app and tenant pair
    of the POST's notifications. Each token must be for a pair the POST's subscriptions belong to (the
    registry's app and tenant, never the notification's claim), and with ``required`` each of those pairs
    must have a token: a valid token of tenant A cannot vouch for tenant B's items in the same POST.
    ``client_id`` (AZURE_CLIENT_ID) is the app of ``tenants=`` (the single-tenant form).
    """

    def __init__(self, *, client_id: str, key_source: Callable[[str], Any],
                 clock: Callable[[], float] = time.time) -> None:
        self.client_id = client_id
        self._key_for = key_source
        self._clock = clock
        self._verified: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def validate(self, token: str, *, tenants: Iterable[str] = (),
                 parties: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
        """Claims of a valid token, else RejectedNotification (or SigningKeysUnavailable).

        ``parties``: the (app id, tenant id) pairs the token may be for; ``tenants``: (``client_id``, tenant) pairs.
        """
        allowed = _pairs(parties, tenants, self.client_id)
        if not {app for app, _ in allowed}:  # PyJWT would skip the audience check for an empty audience
            raise RejectedNotification("validation_token_invalid",
                                       "AZURE_CLIENT_ID is not set and no app id is recorded: cannot check the audience")
        with self._lock:
            claims = self._verified.get(token)
        if claims is None or claims["exp"] + CLOCK_SKEW < self._clock():
            claims = self._verify(token)
            with self._lock:
                if len(self._verified) >= _TOKEN_CACHE_SIZE:
                    self._verified.clear()
                self._verified[token] = claims
        tenant = token_tenant(claims)
        if tenant not in {t for _, t in allowed}:
            raise RejectedNotification("validation_token_invalid",
                                       f"validation token issuer {str(claims.get('iss'))[:100]!r} is not one of our tenants")
        audience = claims.get("aud")
        if not isinstance(audience, str) or audience.lower() not in {app for app, _ in allowed}:
            raise RejectedNotification("validation_token_invalid",
                                       f"validation token rejected: Audience {str(audience)[:64]!r} is not our app")
        if (audience.lower(), tenant) not in allowed:
            raise RejectedNotification("validation_token_invalid", f"validation token for app {audience[:64]!r} in "
                                       f"tenant {tenant[:64]!r}: no subscription of that app in that tenant")
        return claims

    def _verify(self, token: str) -> dict[str, Any]:
        """Signature, algorithm, times and Graph's appid; the audience is checked by :meth:`validate`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise RejectedNotification("validation_token_invalid", f"validation token is not a JWT: {exc}") from exc
        if header.get("alg") != "RS256":
            raise RejectedNotification("validation_token_invalid",
                                       f"validation token algorithm {str(header.get('alg'))[:16]!r} is not RS256")
        try:
            key = self._key_for(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise SigningKeysUnavailable(f"signing keys unavailable: {exc}") from exc
        except jwt.PyJWTError as exc:  # unknown kid, malformed JWKS
            raise RejectedNotification("validation_token_invalid", f"validation token key: {exc}") from exc
        try:
            # The audience is one of several apps, and differs between POSTs: checked after the cache, per POST.
            claims = jwt.decode(token, key, algorithms=["RS256"], leeway=CLOCK_SKEW,
                                options={"require": ["exp", "nbf", "aud", "iss"], "verify_aud": False})
        except jwt.PyJWTError as exc:
            raise RejectedNotification("validation_token_invalid", f"validation token rejected: {exc}") from exc
        if claims.get("appid") != GRAPH_NOTIFICATION_APPID:
            raise RejectedNotification("validation_token_invalid",
                                       f"validation token appid {str(claims.get('appid'))[:64]!r} is not Microsoft Graph's")
        return claims

    def validate_all(self, tokens: Iterable[str], *, tenants: Iterable[str] = (),
                     parties: Iterable[tuple[str, str]] = (), required: Iterable[tuple[str, str]] = ()) -> None:
        """Validate each token; the first failure raises (the whole POST is then suspect).

        ``required``: (app id, tenant id) pairs that must each have a valid token, else ``validation_token_missing``.
        """
        allowed, tokens, required = _pairs(parties, tenants, self.client_id), list(tokens), list(required)
        if any(not (app and tenant) for app, tenant in required):  # fail closed: a pair we cannot check is not met
            raise RejectedNotification("validation_token_invalid", "a rich notification's subscription has no app id "
                                       "(AZURE_CLIENT_ID is not set and none is recorded): cannot check the audience")
        if len(tokens) > MAX_TOKENS:
            raise RejectedNotification("validation_token_invalid",
                                       f"{len(tokens)} validation tokens in one POST; Graph sends one per app and tenant")
        covered = set()
        for token in tokens:
            claims = self.validate(token, parties=allowed)
            covered.add((str(claims["aud"]).lower(), token_tenant(claims)))
        for app, tenant in sorted(_pairs(required, (), "") - covered):
            raise RejectedNotification("validation_token_missing",
                                       f"no validation token for app {app[:64]!r} in tenant {tenant[:64]!r}")


def _pairs(parties: Iterable[tuple[str, str]], tenants: Iterable[str], client_id: str) -> set[tuple[str, str]]:
    """(app id, tenant id) pairs, lower-cased, without empty members."""
    pairs = {(app.lower(), tenant.lower()) for app, tenant in parties}
    pairs |= {(client_id.lower(), tenant.lower()) for tenant in tenants}
    return {(app, tenant) for app, tenant in pairs if app and tenant}


def token_tenant(claims: Mapping[str, Any]) -> str:
    """The tenant id a validation token was issued by, from its v1 or v2 issuer ("" if neither form)."""
    issuer = str(claims.get("iss", "")).lower()
    for prefix, suffix in (("https://sts.windows.net/", "/"), ("https://login.microsoftonline.com/", "/v2.0")):
        if issuer.startswith(prefix) and issuer.endswith(suffix):
            tenant = issuer[len(prefix):len(issuer) - len(suffix)]
            return tenant if tenant and "/" not in tenant else ""
    return ""
