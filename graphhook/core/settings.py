"""Settings: read once from the environment at each process's entry point into one frozen value.

Nothing else in graphhook reads ``os.environ``. Every variable is listed,
with its default, in ``deploy/env.example``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field, fields
from typing import Mapping

from graphhook.core.errors import ConfigError

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"
DEFAULT_QUEUE = "graphhook"
DEFAULT_TENANT = "default"  # the one tenant of a configuration without tenants: (workers/triggers/tenants.py)
MAX_WORKER_CONCURRENCY = 256
DEFAULT_MAX_BODY = 4 * 1024 * 1024  # bytes; a 100-item rich batch is well under 1 MiB
# Notifications in one POST. Microsoft documents no maximum (docs/intake.md#limits): Graph "may send
# multiple items in a single request"; the emulator batches 50. 1,000 is 20x that and more rich items than
# fit in DEFAULT_MAX_BODY, yet bounds what one hostile POST costs (lookups, checks, metrics).
DEFAULT_MAX_NOTIFICATIONS = 1000  # items per POST; more get 413 before any item is looked at
DEFAULT_MAX_VALIDATION_TOKEN = 1024  # characters; real tokens are ~100 (graph-protocol.md §1)
# Where validation-token signing keys are found (the Graph SDKs' default wellKnownUri, graph-protocol.md §4).
DEFAULT_OPENID_CONFIG_URL = "https://login.microsoftonline.com/common/.well-known/openid-configuration"
DEFAULT_REGISTRY_CACHE = 5  # seconds the receiver trusts a subscription it read from Redis; 0 disables
# Workers (docs/email-record.md): Graph serves attachments up to 150 MB (outlook-large-attachments).
DEFAULT_ATTACHMENT_MAX = 150 * 1024 * 1024  # bytes; larger attachments are described, not downloaded
DEFAULT_ATTACHMENT_SPOOL = 1024 * 1024  # bytes held in memory before an attachment spills to a temp file
DEFAULT_ITEM_DEPTH = 3  # nested item attachments turned into records (Graph nests up to 30)
DEFAULT_DEDUPE = 7 * 24 * 3600  # seconds a (mailbox, message, change type) is remembered as processed

# GRAPHHOOK_CACHE_KEY is stretched with HKDF, which is for keys that are already random (RFC 5869 §4),
# not for passphrases: a weak key would let whoever reads Redis guess it offline and read the token.
CACHE_KEY_MIN_BYTES = 32  # random bytes: 64 hex digits (`openssl rand -hex 32`) or base64 of 32 bytes
_CACHE_KEY_MIN_DISTINCT = 16  # distinct byte values; 32 random bytes have ~30, "00…0" or "abab…" have 1 or 2
_HEX = re.compile(r"[0-9a-fA-F]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


def check_cache_key(value: str) -> None:
    """Raise ConfigError unless ``value`` holds at least 32 random bytes in hex or base64; never quotes it."""
    value = value.strip()
    decoded = b""
    if _HEX.fullmatch(value):  # hex first: 4 bits a character, whatever base64 would make of it
        decoded = bytes.fromhex(value) if len(value) % 2 == 0 else b""
    elif _BASE64.fullmatch(value):
        try:
            decoded = base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4),
                                       validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
    if len(decoded) < CACHE_KEY_MIN_BYTES or len(set(decoded)) < _CACHE_KEY_MIN_DISTINCT:
        raise ConfigError(f"GRAPHHOOK_CACHE_KEY is too weak (the value is not shown): it must hold at least "
                          f"{CACHE_KEY_MIN_BYTES} random bytes, as hex (`openssl rand -hex 32`) or base64 "
                          f"(`openssl rand -base64 32`); or leave it unset to derive the key from the client credential")


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
    tenant: str = DEFAULT_TENANT  # the tenant's name in the configuration; set per tenant, never from the environment
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    client_certificate_path: str = ""
    client_certificate_password: str = field(default="", repr=False)
    authority_host: str = DEFAULT_AUTHORITY_HOST
    graph_url: str = DEFAULT_GRAPH_URL
    redis_url: str = ""
    redis_ssl_cert_reqs: str = "required"
    redis_ssl_ca_certs: str = ""  # PEM file of the CA(s) that sign the rediss:// server's certificate; empty: system CAs
    public_url: str = ""
    config_path: str = "graphhook.yaml"
    ca_bundle: str = ""
    queue_name: str = DEFAULT_QUEUE
    events_file: str = ""
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_validation_token: int = DEFAULT_MAX_VALIDATION_TOKEN
    max_notifications: int = DEFAULT_MAX_NOTIFICATIONS
    log_level: str = "INFO"
    openid_config_url: str = DEFAULT_OPENID_CONFIG_URL
    encryption_keys: str = ""  # comma-separated [encryptionCertificateId=]path of PEM/PKCS#12 files
    encryption_key_password: str = field(default="", repr=False)
    registry_cache_seconds: int = DEFAULT_REGISTRY_CACHE
    cache_key: str = field(default="", repr=False)  # encrypts the MSAL cache in Redis (workers/graph/auth.py)
    attachment_max_bytes: int = DEFAULT_ATTACHMENT_MAX
    attachment_spool_bytes: int = DEFAULT_ATTACHMENT_SPOOL
    attachment_dir: str = ""  # keep attachment (and MIME) bytes here, named by SHA-256; empty: do not keep
    fetch_mime: bool = False
    item_depth: int = DEFAULT_ITEM_DEPTH
    dedupe_seconds: int = DEFAULT_DEDUPE
    mailbox_concurrency: int = 4  # Graph: 4 concurrent requests per app and mailbox
    mailbox_budget: int = 10000  # Graph: 10,000 requests per 10 minutes per app and mailbox
    mailbox_slot_seconds: int = 90  # a slot a crashed process never released is free again after this
    graph_retry_seconds: int = 60
    worker_maintenance_seconds: int = 60  # RQ puts a dead worker's jobs back at its maintenance (RQ's default: 600)
    worker_concurrency: int = 32  # jobs in flight per worker process (threads: they mostly wait on Graph)
    worker_backlog: int = 1000  # jobs a process holds for mailboxes already at their share (fairness)
    worker_shutdown_seconds: int = 25  # on SIGTERM, jobs still running after this are handed back (Heroku: 30 s)
    renew_margin_minutes: int = 1440  # renew a subscription when less than this is left
    renew_interval_seconds: int = 60  # seconds between renewer passes
    resync_every_minutes: int = 30  # safety delta resync of every watched folder
    rich_notifications: bool = False  # subscribe with includeResourceData (needs GRAPHHOOK_ENCRYPTION_KEYS)
    log_format: str = "json"  # json (one object per line) | text (graphhook/core/logs.py)
    status_token: str = field(default="", repr=False)  # bearer token for /status; with no credentials /status is 404
    status_user: str = ""  # basic-auth user for /status (with status_password)
    status_password: str = field(default="", repr=False)
    status_max_failures: int = 10  # failed /status or /metrics logins per client address and window, then 429
    status_failure_window_seconds: int = 300  # the window those failures are counted in
    proxy_hops: int = 0  # reverse proxies in front that append to X-Forwarded-For (Heroku, ingress-nginx: 1)
    metrics_port: int = 9108  # private Prometheus listener in the gunicorn master; 0: none
    metrics_bind: str = "127.0.0.1"  # its address: loopback, or the pod address in Kubernetes; never public
    metrics_subscription_detail: bool = False  # one series per subscription, with mailbox labels (private only)
    body_timeout_seconds: int = 10  # a request body must arrive within this many seconds, else 408 and closed

    @property
    def queues(self) -> list[str]:
        """The queues a worker serves: one, so RQ dequeues with LMOVE into its intermediate list (a worker that
        dies between taking a job and starting it loses nothing); fired triggers' work goes to its front."""
        return [self.queue_name]

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
            redis_ssl_ca_certs=env.get("REDIS_SSL_CA_CERTS", ""),
            public_url=env.get("PUBLIC_URL", "").rstrip("/"),
            config_path=env.get("GRAPHHOOK_CONFIG", "graphhook.yaml"),
            ca_bundle=env.get("REQUESTS_CA_BUNDLE", ""),
            queue_name=env.get("GRAPHHOOK_QUEUE", DEFAULT_QUEUE),
            events_file=env.get("GRAPHHOOK_EVENTS_FILE", ""),
            max_body_bytes=_int(env, "GRAPHHOOK_MAX_BODY_BYTES", DEFAULT_MAX_BODY),
            max_validation_token=_int(env, "GRAPHHOOK_MAX_VALIDATION_TOKEN", DEFAULT_MAX_VALIDATION_TOKEN),
            max_notifications=_int(env, "GRAPHHOOK_MAX_NOTIFICATIONS", DEFAULT_MAX_NOTIFICATIONS),
            renew_margin_minutes=_int(env, "GRAPHHOOK_RENEW_MARGIN_MINUTES", 1440),
            renew_interval_seconds=_int(env, "GRAPHHOOK_RENEW_INTERVAL_SECONDS", 60),
            resync_every_minutes=_int(env, "GRAPHHOOK_RESYNC_EVERY_MINUTES", 30),
            rich_notifications=_bool(env, "GRAPHHOOK_RICH_NOTIFICATIONS", False),
            log_level=env.get("GRAPHHOOK_LOG_LEVEL", "INFO").upper(),
            log_format=env.get("GRAPHHOOK_LOG_FORMAT", "json").lower(),
            status_token=env.get("GRAPHHOOK_STATUS_TOKEN", ""),
            status_user=env.get("GRAPHHOOK_STATUS_USER", ""),
            status_password=env.get("GRAPHHOOK_STATUS_PASSWORD", ""),
            status_max_failures=_int(env, "GRAPHHOOK_STATUS_MAX_FAILURES", 10),
            status_failure_window_seconds=_int(env, "GRAPHHOOK_STATUS_FAILURE_WINDOW_SECONDS", 300),
            proxy_hops=_int(env, "GRAPHHOOK_PROXY_HOPS", 0),
            metrics_port=_int(env, "GRAPHHOOK_METRICS_PORT", 9108),
            metrics_bind=env.get("GRAPHHOOK_METRICS_BIND", "127.0.0.1"),
            metrics_subscription_detail=_bool(env, "GRAPHHOOK_METRICS_SUBSCRIPTION_DETAIL", False),
            body_timeout_seconds=_int(env, "GRAPHHOOK_BODY_TIMEOUT_SECONDS", 10),
            openid_config_url=env.get("GRAPHHOOK_OPENID_CONFIG_URL", DEFAULT_OPENID_CONFIG_URL),
            encryption_keys=env.get("GRAPHHOOK_ENCRYPTION_KEYS", ""),
            encryption_key_password=env.get("GRAPHHOOK_ENCRYPTION_KEY_PASSWORD", ""),
            registry_cache_seconds=_int(env, "GRAPHHOOK_REGISTRY_CACHE_SECONDS", DEFAULT_REGISTRY_CACHE),
            cache_key=env.get("GRAPHHOOK_CACHE_KEY", ""),
            attachment_max_bytes=_int(env, "GRAPHHOOK_ATTACHMENT_MAX_BYTES", DEFAULT_ATTACHMENT_MAX),
            attachment_spool_bytes=_int(env, "GRAPHHOOK_ATTACHMENT_SPOOL_BYTES", DEFAULT_ATTACHMENT_SPOOL),
            attachment_dir=env.get("GRAPHHOOK_ATTACHMENT_DIR", ""),
            fetch_mime=_bool(env, "GRAPHHOOK_FETCH_MIME", False),
            item_depth=_int(env, "GRAPHHOOK_ITEM_DEPTH", DEFAULT_ITEM_DEPTH),
            dedupe_seconds=_int(env, "GRAPHHOOK_DEDUPE_SECONDS", DEFAULT_DEDUPE),
            mailbox_concurrency=_int(env, "GRAPHHOOK_MAILBOX_CONCURRENCY", 4),
            mailbox_budget=_int(env, "GRAPHHOOK_MAILBOX_BUDGET", 10000),
            mailbox_slot_seconds=_int(env, "GRAPHHOOK_MAILBOX_SLOT_SECONDS", 90),
            graph_retry_seconds=_int(env, "GRAPHHOOK_GRAPH_RETRY_SECONDS", 60),
            worker_maintenance_seconds=_int(env, "GRAPHHOOK_WORKER_MAINTENANCE_SECONDS", 60),
            worker_concurrency=_int(env, "GRAPHHOOK_WORKER_CONCURRENCY", 32),
            worker_backlog=_int(env, "GRAPHHOOK_WORKER_BACKLOG", 1000),
            worker_shutdown_seconds=_int(env, "GRAPHHOOK_WORKER_SHUTDOWN_SECONDS", 25),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check values that are wrong whatever the process (bad URLs, bad choices)."""
        for name, value in (("AZURE_AUTHORITY_HOST", self.authority_host), ("GRAPH_URL", self.graph_url),
                            ("GRAPHHOOK_OPENID_CONFIG_URL", self.openid_config_url)):
            if not value.startswith("https://"):
                raise ConfigError(f"{name} must be an https:// URL, got {value!r}")
        if self.public_url and not self.public_url.startswith("https://"):
            raise ConfigError(f"PUBLIC_URL must be an https:// URL (Graph only posts to https), got {self.public_url!r}")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {self.redis_url.split('@')[-1]!r}")
        if self.cache_key:
            check_cache_key(self.cache_key)
        if self.redis_ssl_cert_reqs not in ("required", "optional", "none"):
            raise ConfigError(f"REDIS_SSL_CERT_REQS must be required, optional or none, got {self.redis_ssl_cert_reqs!r}")
        for name, number, low in (("GRAPHHOOK_MAILBOX_CONCURRENCY", self.mailbox_concurrency, 1),
                                  ("GRAPHHOOK_MAILBOX_BUDGET", self.mailbox_budget, 1),
                                  ("GRAPHHOOK_MAILBOX_SLOT_SECONDS", self.mailbox_slot_seconds, 1),
                                  ("GRAPHHOOK_ITEM_DEPTH", self.item_depth, 0),
                                  ("GRAPHHOOK_DEDUPE_SECONDS", self.dedupe_seconds, 60),
                                  ("GRAPHHOOK_ATTACHMENT_MAX_BYTES", self.attachment_max_bytes, 0),
                                  ("GRAPHHOOK_STATUS_MAX_FAILURES", self.status_max_failures, 1),
                                  ("GRAPHHOOK_STATUS_FAILURE_WINDOW_SECONDS", self.status_failure_window_seconds, 1),
                                  ("GRAPHHOOK_PROXY_HOPS", self.proxy_hops, 0),
                                  ("GRAPHHOOK_METRICS_PORT", self.metrics_port, 0),
                                  ("GRAPHHOOK_BODY_TIMEOUT_SECONDS", self.body_timeout_seconds, 1),
                                  ("GRAPHHOOK_WORKER_CONCURRENCY", self.worker_concurrency, 1),
                                  ("GRAPHHOOK_WORKER_BACKLOG", self.worker_backlog, 0),
                                  ("GRAPHHOOK_WORKER_SHUTDOWN_SECONDS", self.worker_shutdown_seconds, 0)):
            if number < low:
                raise ConfigError(f"{name} must be at least {low}, got {number!r}")
        if self.worker_concurrency > MAX_WORKER_CONCURRENCY:
            raise ConfigError(f"GRAPHHOOK_WORKER_CONCURRENCY must be at most {MAX_WORKER_CONCURRENCY} (threads per "
                              f"process; run more processes instead), got {self.worker_concurrency!r}")
        if self.log_format not in ("json", "text"):
            raise ConfigError(f"GRAPHHOOK_LOG_FORMAT must be json or text, got {self.log_format!r}")
        if bool(self.status_user) != bool(self.status_password):
            raise ConfigError("GRAPHHOOK_STATUS_USER and GRAPHHOOK_STATUS_PASSWORD must be set together")
        if self.max_body_bytes < 1024:
            raise ConfigError(f"GRAPHHOOK_MAX_BODY_BYTES must be at least 1024, got {self.max_body_bytes!r}")
        if self.max_notifications < 1:
            raise ConfigError(f"GRAPHHOOK_MAX_NOTIFICATIONS must be at least 1, got {self.max_notifications!r}")

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
