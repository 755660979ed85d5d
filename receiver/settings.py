"""Settings: read once from the environment at each process's entry point into one frozen value.

Nothing else in graphhook reads ``os.environ``. Every variable is listed,
with its default, in ``deploy/env.example``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Mapping

from .errors import ConfigError

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"
DEFAULT_QUEUE = "graphhook"
DEFAULT_MAX_BODY = 4 * 1024 * 1024  # bytes; a 100-item rich batch is well under 1 MiB
DEFAULT_MAX_VALIDATION_TOKEN = 1024  # characters; real tokens are ~100 (graph-protocol.md §1)

_HINTS = {
    "AZURE_TENANT_ID": "the Directory (tenant) ID of your app registration",
    "AZURE_CLIENT_ID": "the Application (client) ID of your app registration",
    "AZURE_CLIENT_SECRET": "a client secret value (or set AZURE_CLIENT_CERTIFICATE_PATH)",
    "REDIS_URL": "e.g. redis://localhost:6379/0 or rediss://… for TLS",
    "PUBLIC_URL": "the external https base URL Graph posts notifications to",
}


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """Everything configurable about a graphhook process."""

    tenant_id: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    client_certificate_path: str = ""
    client_certificate_password: str = field(default="", repr=False)
    authority_host: str = DEFAULT_AUTHORITY_HOST
    graph_url: str = DEFAULT_GRAPH_URL
    redis_url: str = ""
    redis_ssl_cert_reqs: str = "required"
    public_url: str = ""
    config_path: str = "graphhook.yaml"
    ca_bundle: str = ""
    queue_name: str = DEFAULT_QUEUE
    events_file: str = ""
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_validation_token: int = DEFAULT_MAX_VALIDATION_TOKEN
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from ``env`` (default ``os.environ``); raise ConfigError on bad values."""
        env = os.environ if env is None else env
        settings = cls(
            tenant_id=env.get("AZURE_TENANT_ID", "").strip(),
            client_id=env.get("AZURE_CLIENT_ID", "").strip(),
            client_secret=env.get("AZURE_CLIENT_SECRET", ""),
            client_certificate_path=env.get("AZURE_CLIENT_CERTIFICATE_PATH", ""),
            client_certificate_password=env.get("AZURE_CLIENT_CERTIFICATE_PASSWORD", ""),
            authority_host=env.get("AZURE_AUTHORITY_HOST", DEFAULT_AUTHORITY_HOST).rstrip("/"),
            graph_url=env.get("GRAPH_URL", DEFAULT_GRAPH_URL).rstrip("/"),
            redis_url=env.get("REDIS_URL", ""),
            redis_ssl_cert_reqs=env.get("REDIS_SSL_CERT_REQS", "required").lower(),
            public_url=env.get("PUBLIC_URL", "").rstrip("/"),
            config_path=env.get("GRAPHHOOK_CONFIG", "graphhook.yaml"),
            ca_bundle=env.get("REQUESTS_CA_BUNDLE", ""),
            queue_name=env.get("GRAPHHOOK_QUEUE", DEFAULT_QUEUE),
            events_file=env.get("GRAPHHOOK_EVENTS_FILE", ""),
            max_body_bytes=_int(env, "GRAPHHOOK_MAX_BODY_BYTES", DEFAULT_MAX_BODY),
            max_validation_token=_int(env, "GRAPHHOOK_MAX_VALIDATION_TOKEN", DEFAULT_MAX_VALIDATION_TOKEN),
            log_level=env.get("GRAPHHOOK_LOG_LEVEL", "INFO").upper(),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check values that are wrong whatever the process (bad URLs, bad choices)."""
        for name, value in (("AZURE_AUTHORITY_HOST", self.authority_host), ("GRAPH_URL", self.graph_url)):
            if not value.startswith("https://"):
                raise ConfigError(f"{name} must be an https:// URL, got {value!r}")
        if self.public_url and not self.public_url.startswith("https://"):
            raise ConfigError(f"PUBLIC_URL must be an https:// URL (Graph only posts to https), got {self.public_url!r}")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {self.redis_url.split('@')[-1]!r}")
        if self.redis_ssl_cert_reqs not in ("required", "optional", "none"):
            raise ConfigError(f"REDIS_SSL_CERT_REQS must be required, optional or none, got {self.redis_ssl_cert_reqs!r}")
        if self.max_body_bytes < 1024:
            raise ConfigError(f"GRAPHHOOK_MAX_BODY_BYTES must be at least 1024, got {self.max_body_bytes!r}")

    def require(self, *names: str) -> None:
        """Raise ConfigError naming every listed environment variable that is unset."""
        values = {
            "AZURE_TENANT_ID": self.tenant_id,
            "AZURE_CLIENT_ID": self.client_id,
            "REDIS_URL": self.redis_url,
            "PUBLIC_URL": self.public_url,
        }
        missing = [n for n in names if n in values and not values[n]]
        if "AZURE_CLIENT_SECRET" in names and not (self.client_secret or self.client_certificate_path):
            missing.append("AZURE_CLIENT_SECRET")
        if missing:
            lines = [f"  {n}: {_HINTS.get(n, 'required')}" for n in missing]
            raise ConfigError("missing environment variable(s):\n" + "\n".join(lines))

    def require_graph(self) -> None:
        """The variables needed to call Microsoft Graph."""
        self.require("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET")

    @property
    def authority(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}"

    def replace(self, **changes: object) -> "Settings":
        """A copy with some fields changed (tests, demo)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(changes)
        return Settings(**data)  # type: ignore[arg-type]
