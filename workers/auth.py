"""Access tokens for Microsoft Graph through MSAL's client-credentials flow.

The token cache is MSAL's own serializable cache, kept in Redis so that every
worker process (and every forked RQ job) shares one token: N jobs in M
processes cause one token request, not N or M. A short Redis lock makes one
process at a time refresh it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import msal
import redis
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from receiver import keys
from receiver.errors import AuthError, ConfigError
from receiver.settings import Settings

log = logging.getLogger("graphhook.auth")

GRAPH_SCOPE = ["https://graph.microsoft.com/.default"]
REFRESH_LOCK_SECONDS = 30  # longest a token request may hold the refresh lock


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


class TokenProvider:
    """Gives a valid bearer token, sharing MSAL's cache through Redis."""

    def __init__(self, settings: Settings, redis_client: redis.Redis | None = None,
                 session: requests.Session | None = None) -> None:
        settings.require_graph()
        self._settings = settings
        self._redis = redis_client
        self._cache = msal.SerializableTokenCache()
        self._lock = threading.Lock()
        credential: Any = settings.client_secret
        if settings.client_certificate_path:
            credential = load_certificate_credential(settings.client_certificate_path, settings.client_certificate_password)
        self._app = msal.ConfidentialClientApplication(
            settings.client_id,
            client_credential=credential,
            authority=settings.authority,
            token_cache=self._cache,
            http_client=session,
            # Single-tenant client credentials need no instance discovery; skipping it keeps
            # MSAL from calling login.microsoftonline.com when the authority is elsewhere.
            instance_discovery=False,
        )
        self.requests_made = 0

    def _load(self) -> None:
        if self._redis is None:
            return
        blob = self._redis.get(keys.TOKEN_CACHE)
        if blob:
            self._cache.deserialize(blob.decode())

    def _save(self) -> None:
        if self._redis is not None and self._cache.has_state_changed:
            self._redis.set(keys.TOKEN_CACHE, self._cache.serialize())
            self._cache.has_state_changed = False

    def token(self) -> str:
        """A bearer token for Graph; raises AuthError with Microsoft's error code on failure."""
        with self._lock:
            self._load()
            result = self._app.acquire_token_for_client(scopes=GRAPH_SCOPE)
            if result.get("token_source") == "identity_provider" and self._redis is not None:
                # Another process may have refreshed meanwhile; that is fine, both tokens are valid.
                self.requests_made += 1
            self._save()
        if "access_token" not in result:
            description = (result.get("error_description") or "").split("\r\n")[0]
            raise AuthError(result.get("error", "unknown_error"), description or "no token returned",
                            tuple(result.get("error_codes") or ()))
        return result["access_token"]
