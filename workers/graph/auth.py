"""Access tokens for Microsoft Graph through MSAL's client-credentials flow, shared by every process.

- MSAL's own :class:`msal.SerializableTokenCache` is kept in Redis, encrypted at
  rest with Fernet (AES-128-CBC + HMAC-SHA256). The key comes from
  ``GRAPHHOOK_CACHE_KEY`` (at least 32 random bytes, hex or base64, checked at
  settings load; HKDF-SHA256 suits such keys, RFC 5869 §4, not passphrases) or,
  when unset, is derived with HKDF from the client credential itself, so every
  process holding the credential can read the cache and nobody else can.
- A process first looks in its memory, then in the shared cache; only on a
  miss does it take a Redis lock and ask the identity platform, re-reading the
  cache once it holds the lock. N jobs in M processes cause one token request.
- MSAL treats a token with under 5 minutes left as expired
  (graph-protocol.md §6); the in-memory copy follows the same rule.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable

import msal
import redis
import requests
from cryptography import x509
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from graphhook.core import keys
from graphhook.core.errors import AuthError, ConfigError
from graphhook.core.settings import Settings, check_cache_key
from workers import metrics

log = logging.getLogger("graphhook.auth")

GRAPH_SCOPE = ["https://graph.microsoft.com/.default"]
REFRESH_LOCK = f"{keys.TOKEN_CACHE}:lock"  # the default tenant's; a named tenant's is keys.token_cache(name) + ":lock"
TOKEN_REQUEST_TIMEOUT = 10.0  # s for one request to the identity platform (MSAL's HTTP timeout)
REFRESH_LOCK_SECONDS = 15  # the refresh lock lapses by itself after this (a holder that crashed)
# A waiter stops waiting for the holder's token after this and asks itself: a token request takes
# well under a second, so a longer wait means the holder died (OOM, SIGKILL) and would otherwise
# stall every Graph call of every worker until the lock lapses. Two requests are harmless.
LOCK_WAIT_SECONDS = 5.0
EXPIRY_MARGIN = 300  # s; MSAL also treats tokens with under 5 minutes left as expired
LOCK_POLL = 0.05  # s between looks at the cache while another process refreshes

_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def load_certificate_credential(path: str, password: str = "") -> dict[str, str]:
    """MSAL's certificate credential from a PEM file holding the private key and certificate."""
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"AZURE_CLIENT_CERTIFICATE_PATH {path!r} cannot be read: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(pem, password.encode() or None)
        cert = x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"AZURE_CLIENT_CERTIFICATE_PATH {path!r} must be a PEM file with the private key and the certificate") from exc
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {"private_key": key_pem.decode(), "thumbprint": cert.fingerprint(hashes.SHA1()).hex(),
            "public_certificate": cert.public_bytes(serialization.Encoding.PEM).decode()}


def cache_cipher(settings: Settings, credential: Any) -> Fernet:
    """The Fernet key for the cache: HKDF over GRAPHHOOK_CACHE_KEY, else over the client credential."""
    if settings.cache_key:
        check_cache_key(settings.cache_key)  # also for settings not built by Settings.from_env
        material, salt = settings.cache_key.encode(), b"graphhook cache key"
    else:
        secret = credential["private_key"] if isinstance(credential, dict) else credential
        material, salt = f"{settings.tenant_id}\n{settings.client_id}\n{secret}".encode(), b"graphhook credential"
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"graphhook msal token cache v1").derive(material)
    return Fernet(base64.urlsafe_b64encode(key))


class TokenProvider:
    """Gives a valid bearer token, sharing MSAL's encrypted cache through Redis."""

    def __init__(self, settings: Settings, redis_client: redis.Redis | None = None,
                 session: requests.Session | None = None, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        settings.require_graph()
        self._settings = settings
        self._redis = redis_client
        self._cache = msal.SerializableTokenCache()
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep
        credential: Any = settings.client_secret
        if settings.client_certificate_path:
            credential = load_certificate_credential(settings.client_certificate_path, settings.client_certificate_password)
        self._fernet = cache_cipher(settings, credential)
        self._app = msal.ConfidentialClientApplication(
            settings.client_id,
            client_credential=credential,
            authority=settings.authority,
            token_cache=self._cache,
            http_client=session,
            timeout=TOKEN_REQUEST_TIMEOUT,
            # Single-tenant client credentials need no instance discovery; skipping it keeps
            # MSAL from calling login.microsoftonline.com when the authority is elsewhere.
            instance_discovery=False,
        )
        self._cache_key = keys.token_cache(settings.tenant)
        self._lock_key = f"{self._cache_key}:lock"
        self._memo: tuple[str, float] | None = None  # (token, expires_on)
        self.requests_made = 0  # token requests this process sent to the identity platform

    # --- the shared, encrypted cache ---------------------------------------------------------
    def _load(self) -> None:
        if self._redis is None:
            return
        blob = self._redis.get(self._cache_key)
        if not blob:
            return
        try:
            self._cache.deserialize(self._fernet.decrypt(blob).decode())
        except (InvalidToken, ValueError):
            # Another key (rotated GRAPHHOOK_CACHE_KEY or credential) or an old plain cache: start afresh.
            log.warning("token cache in Redis cannot be decrypted with this key; it will be replaced")

    def _save(self) -> None:
        if self._redis is not None and self._cache.has_state_changed:
            self._redis.set(self._cache_key, self._fernet.encrypt(self._cache.serialize().encode()))
            self._cache.has_state_changed = False

    def _cached(self) -> tuple[str, float] | None:
        """A token from the MSAL cache with more than the margin left, without any network call."""
        now = self._clock()
        query = {"client_id": self._settings.client_id, "realm": self._settings.tenant_id}
        for entry in self._cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN, target=GRAPH_SCOPE,
                                        query=query, now=now):
            expires = float(entry["expires_on"])
            refresh_on = float(entry.get("refresh_on") or expires)
            if expires - now > EXPIRY_MARGIN and refresh_on > now:
                return entry["secret"], expires
        return None

    # --- public -------------------------------------------------------------------------------
    def token(self) -> str:
        """A bearer token for Graph; raises AuthError with Microsoft's error code on failure."""
        memo = self._memo
        if memo and memo[1] - self._clock() > EXPIRY_MARGIN:
            return memo[0]
        with self._lock:
            self._load()
            found = self._cached()
            if found is None:
                found = self._refresh()
            self._memo = found
            return found[0]

    def invalidate(self) -> None:
        """Forget the in-memory token (e.g. after Graph answered 401)."""
        self._memo = None

    def _refresh(self) -> tuple[str, float]:
        """Get a token from the identity platform, one process at a time."""
        if self._redis is None:
            return self._request()
        me = secrets.token_hex(8)
        deadline = self._clock() + LOCK_WAIT_SECONDS
        while not self._redis.set(self._lock_key, me, nx=True, ex=REFRESH_LOCK_SECONDS):
            # Someone else is asking; their token lands in the shared cache.
            self._sleep(LOCK_POLL)
            self._load()
            found = self._cached()
            if found is not None:
                return found
            if self._clock() > deadline:
                log.warning("the token refresh lock was held for over %.0f s (a crashed process?); "
                            "requesting a token without it", LOCK_WAIT_SECONDS)
                return self._request()
        try:
            self._load()  # it may have been refreshed while we waited for the lock
            found = self._cached()
            return found if found is not None else self._request()
        finally:
            self._redis.eval(_RELEASE, 1, self._lock_key, me)

    def _request(self) -> tuple[str, float]:
        result = self._app.acquire_token_for_client(scopes=GRAPH_SCOPE)
        if result.get("token_source") == "identity_provider":
            self.requests_made += 1
            metrics.token_request("access_token" in result)
        self._save()
        if "access_token" not in result:
            description = (result.get("error_description") or "").split("\r\n")[0]
            raise AuthError(result.get("error", "unknown_error"), description or "no token returned",
                            tuple(result.get("error_codes") or ()))
        return result["access_token"], self._clock() + float(result.get("expires_in") or 0)
