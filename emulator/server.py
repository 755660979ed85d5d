"""The emulator as one object: state, the Flask app, the HTTPS server and notification delivery.

Python API (tests, demo, benchmarks)::

    emu = Emulator(workdir)            # generates a CA, a tenant and an app registration
    customer = emu.add_tenant()        # more tenants: docs/emulator.md#several-tenants (tenants.py)
    emu.start()                        # https://127.0.0.1:<port>, CA at emu.ca_path
    emu.add_user("alice@contoso.com")
    emu.deliver("alice@contoso.com", {"subject": "Hi", "from": "bob@fabrikam.com"})
    emu.advance(3600)                  # an hour later: expiry, reauthorization notices, retries
    emu.stop()

The same operations are exposed over HTTP under ``/_emulator`` (see ``admin.py``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import secrets
import socket
import struct
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Callable

import requests
from flask import Flask, g, request

from . import actions, admin, batch, delta, drafts, folders, identity, messages, pacing, routing, subscriptions, uploads
from .clock import Clock, as_clock
from .delivery import Delivery, DeliveryOptions
from .delta import DeltaStore
from .faults import ConnectionReset, Faults
from .graphapi import authenticate
from .https import HTTPSServer
from .identity import App, Directory
from .mailstore import MailStore
from .notify import LIFECYCLE_EVENTS, change_notification, lifecycle_notification, reauthorization_due
from .pki import CertificateAuthority
from .richcrypto import load_certificate
from .subscriptions import Subscription, SubscriptionStore
from .tenants import Tenant, Tenants
from .throttle import Throttle
from .uploads import UploadSessions

log = logging.getLogger(__name__)

TICK_INTERVAL = 1.0  # s of real time between background checks for expiry and due notices
REAUTHORIZATION_GRACE = 15 * 60.0  # s after a reauthorizationRequired before delivery pauses (not documented)


class Emulator:
    """A local Microsoft Graph and identity platform for one tenant, or several (``add_tenant``).

    Knobs (attributes, change them any time): ``expiry_mode`` ("reject" or "clamp" beyond the
    maximum lifetime), ``revalidate_on_patch``, ``reauthorization_grace`` (s),
    ``authorization_lifetime`` (s, or None to tie authorization to the subscription's expiry),
    ``delivery.options`` (:class:`DeliveryOptions`), ``faults``, ``throttle``, ``latency`` (s per Graph call) and ``uploads``
    (attachment upload sessions: ``lifetime``, ``min_size``, ``max_size``).
    """

    def __init__(
        self,
        workdir: str | Path | None = None,
        *,
        tenant_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        expiry_mode: str = "reject",
        delivery: DeliveryOptions | None = None,
        clock: Clock | Callable[[], float] | None = None,
        latency: float = 0.0,
    ) -> None:
        if expiry_mode not in ("reject", "clamp"):
            raise ValueError(f"expiry_mode must be 'reject' or 'clamp', got {expiry_mode!r}")
        self.clock = as_clock(clock)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="graphhook-emulator-"))
        self.ca = CertificateAuthority(self.workdir)
        self.directory = Directory(tenant_id or str(uuid.uuid4()), clock=self.clock)
        self.app_registration = self.directory.add_app(
            App(client_id=client_id or str(uuid.uuid4()), secret=client_secret or secrets.token_urlsafe(30))
        )
        self.mail = MailStore(now=self.clock.now, tenant_id=self.tenant_id)
        self.subscriptions = SubscriptionStore(monotonic=self.clock.monotonic, tenant_id=self.tenant_id)
        self.tenants = Tenants(self)  # the first is this tenant; add_tenant() adds more
        self.refuse_revoked_tokens = True  # Graph refuses tokens an app holds in a tenant that revoked its consent
        self.faults = Faults()
        self.throttle = Throttle(self.clock.monotonic)
        self.delta = DeltaStore()
        self.uploads = UploadSessions()  # attachment upload sessions (uploads.py)
        self.expiry_mode = expiry_mode
        self.latency = latency  # s added to every Graph call, as real Graph takes (emulator/pacing.py)
        self.paced = 0  # calls that took the latency
        self.revalidate_on_patch = False
        self.reauthorization_grace = REAUTHORIZATION_GRACE
        self.authorization_lifetime: float | None = None
        self.outbound = requests.Session()
        self.outbound.trust_env = False  # never route loopback deliveries through a proxy
        self.outbound_verify: Any = str(self.ca.cert_path)
        self.delivery = Delivery(self.outbound, self.outbound_verify, delivery, on_event=self.record,
                                 monotonic=self.clock.monotonic, token_issuer=self._validation_token,
                                 on_dropped=self._dropped)
        self.request_log: deque[dict[str, Any]] = deque(maxlen=100_000)
        self.events: deque[dict[str, Any]] = deque(maxlen=100_000)
        self.outbound_mail: list[dict[str, Any]] = []  # mail sent to addresses outside the tenant
        self._host, self._port = host, port
        self._server = None
        self._stopping = threading.Event()
        self.app = self._build_app()

    # --- identity facts clients need -------------------------------------------------------
    @property
    def tenant_id(self) -> str:
        return self.directory.tenant_id

    @property
    def client_id(self) -> str:
        return self.app_registration.client_id

    @property
    def client_secret(self) -> str:
        return self.app_registration.secret or ""

    @property
    def ca_path(self) -> Path:
        return self.ca.cert_path

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("emulator is not started")
        host = self._host if ":" not in self._host else f"[{self._host}]"
        return f"https://{host}:{self._server.port}"

    @property
    def graph_url(self) -> str:
        return f"{self.url}/v1.0"

    def environment(self) -> dict[str, str]:
        """The graphhook environment variables that point at this emulator."""
        return {
            "AZURE_TENANT_ID": self.tenant_id,
            "AZURE_CLIENT_ID": self.client_id,
            "AZURE_CLIENT_SECRET": self.client_secret,
            "AZURE_AUTHORITY_HOST": self.url,
            "GRAPH_URL": self.graph_url,
            "REQUESTS_CA_BUNDLE": str(self.ca_path),
        }

    # --- several tenants (tenants.py) ----------------------------------------------------------
    def add_tenant(self, tenant_id: str | None = None) -> Tenant:
        """Serve another tenant (a random GUID unless given); see :class:`~emulator.tenants.Tenant`."""
        return self.tenants.add(tenant_id)

    def tenant(self, tenant_id: str | None = None) -> Tenant:
        """A served tenant by id; the first (this emulator's ``tenant_id``) by default."""
        return self.tenants.get(tenant_id)

    def consent(self, app: App | str, tenant: Tenant | str, roles: tuple[str, ...] | list[str] | None = None) -> None:
        """Admin consent of ``app`` in ``tenant`` (roles: the app's own ``roles`` unless given)."""
        self.tenants.consent(app, tenant, roles)

    def revoke_consent(self, app: App | str, tenant: Tenant | str) -> int:
        """Revoke ``app``'s consent in ``tenant`` (:meth:`emulator.tenants.Tenants.revoke`)."""
        return self.tenants.revoke(app, tenant)

    def _validation_token(self, key: tuple[str, str]) -> str:
        return self.directory.issue_validation_token(key[0], tenant_id=key[1])

    def requests(self, method: str | None = None, path: str | None = None, status: int | None = None) -> list[dict[str, Any]]:
        """Entries of ``request_log`` matching a method, a path substring and a status."""
        return [r for r in list(self.request_log)
                if (method is None or r["method"] == method.upper())
                and (path is None or path in r["path"])
                and (status is None or r["status"] == status)]

    # --- the web app -------------------------------------------------------------------------
    def _build_app(self) -> Flask:
        app = Flask("graphhook-emulator")
        app.config["EMULATOR"] = self
        for module in (identity, subscriptions, folders, messages, actions, drafts, uploads, delta, batch, admin, routing):
            app.register_blueprint(module.bp)
        app.register_blueprint(uploads.sessions_bp)  # the pre-authenticated upload URLs, outside /v1.0

        @app.before_request
        def _before():
            g.started = time.monotonic()
            if request.path.startswith("/v1.0"):
                error = authenticate()
                if error is not None:
                    return error
                throttled = pacing.admit(self)
                if throttled is not None:
                    return throttled
                pacing.wait(self)
                self.faults.maybe_fail("graph", request.method, request.path)
            return None

        @app.teardown_request
        def _teardown(_exc):
            key = g.pop("throttle_key", None)
            if key is not None:
                self.throttle.release(key)

        @app.after_request
        def _after(response):
            pacing.answered(self, response)
            if not request.path.startswith("/_emulator"):
                self.request_log.append({
                    "method": request.method, "path": request.path, "query": request.query_string.decode(),
                    "status": response.status_code, "app": g.get("app_id"), "tenant": g.get("tenant_id"), "at": self.clock.time(),
                    "batch": request.headers.get("X-Emulator-Batch") is not None, "prefer": request.headers.get("Prefer"),
                    "ms": round((time.monotonic() - g.get("started", time.monotonic())) * 1000, 2),
                })
            return response

        @app.errorhandler(ConnectionReset)
        def _reset(_exc):
            sock = request.environ.get("emulator.socket")
            if sock is not None:  # linger 0: the close the server makes of it is a reset, not a goodbye
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                with contextlib.suppress(OSError):  # nothing more gets out; the server closes its end
                    sock.shutdown(socket.SHUT_RDWR)
            return "", 500

        return app

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Emulator":
        """Serve HTTPS on a background thread; return self."""
        pair = self.ca.issue("emulator")
        self._server = HTTPSServer(self.app, self._host, self._port, pair.cert_path, pair.key_path).start()
        self.delivery.start()
        self._stopping.clear()
        threading.Thread(target=self._ticker, name="emulator-clock", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.delivery.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- state changes -----------------------------------------------------------------------
    def record(self, kind: str, **fields: Any) -> None:
        """Append to ``events`` (what the emulator did, for tests and the control API)."""
        self.events.append({"event": kind, "at": self.clock.time(), **fields})

    def add_user(self, address: str, display_name: str | None = None):
        """Create a mailbox with Outlook's default folders (idempotent)."""
        return self.mail.add_user(address, display_name)

    def load_encryption_certificate(self, encoded: str):
        return load_certificate(encoded)

    def deliver(self, mailbox: str, spec: dict[str, Any], folder: str = "inbox") -> dict[str, Any]:
        """Put a new message in ``mailbox`` and notify matching subscriptions (``created``)."""
        user, target, message = self.mail.add_message(mailbox, spec, folder)
        self.record("message.delivered", mailbox=user.mail, id=message["id"], subject=message["subject"])
        self.notify_change(user.id, target.id, message, "created")
        return message

    def notify_change(self, user_id: str, folder_id: str, message: dict[str, Any], change: str,
                      before: dict[str, Any] | None = None) -> int:
        """Queue a change notification for every subscription watching this folder; return how many.

        A subscription whose resource has a ``$filter`` hears only about matching messages; an
        update that makes a message stop matching is a ``deleted`` for it (graph-protocol.md §1).
        """
        folder = self.mail.users[user_id].folders[folder_id]
        now = self.clock.now()
        sent = 0
        for sub in self.subscriptions.watching(user_id, folder_id, folder.hidden, now):
            kind, wanted = change, {change}
            if change == "updated" and before is not None and sub.matches(before) and not sub.matches(message):
                kind, wanted = "deleted", {"updated", "deleted"}
            elif not sub.matches(message):
                continue
            if not wanted & set(sub.change_types):
                continue
            if sub.paused(now):
                sub.lost += 1
                self.record("notification.paused", id=sub.id, changeType=kind)
                continue
            item = change_notification(sub, sub.tenant_id or self.tenant_id, user_id, message, kind)
            rich = (sub.application_id, sub.tenant_id or self.tenant_id) if "encryptedContent" in item else None
            self.delivery.submit(sub.notification_url, item, app_id=rich)
            sent += 1
        return sent

    def lifecycle(self, subscription_id: str, event: str) -> None:
        """Send a lifecycle event (``reauthorizationRequired``, ``subscriptionRemoved``, ``missed``) now.

        ``reauthorizationRequired`` also starts the grace period after which delivery pauses;
        ``subscriptionRemoved`` deletes the subscription.
        """
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"unknown lifecycle event {event!r}")
        now = self.clock.now()
        with self.subscriptions.lock:
            sub = self.subscriptions.items.get(subscription_id)
            if sub is None:
                raise KeyError(subscription_id)
            if event == "subscriptionRemoved":
                del self.subscriptions.items[subscription_id]
            elif event == "reauthorizationRequired":
                if not sub.reauthorization_required:
                    sub.pause_at = now + dt.timedelta(seconds=self.reauthorization_grace)
                sub.reauthorization_required = True
        self._send_lifecycle(sub, event)

    def _send_lifecycle(self, sub: Subscription, event: str) -> None:
        if not sub.lifecycle_url:
            # Lifecycle notifications go only to lifecycleNotificationUrl; without one, Graph has nowhere to send them.
            self.record("lifecycle.undeliverable", id=sub.id, lifecycleEvent=event)
            return
        self.delivery.submit(sub.lifecycle_url, lifecycle_notification(sub, sub.tenant_id or self.tenant_id, event))
        self.record("lifecycle.sent", id=sub.id, lifecycleEvent=event)

    def challenge(self, which: Callable[[Subscription], bool]) -> int:
        """Pause the subscriptions ``which`` selects now and send each a ``reauthorizationRequired``; return how many."""
        now = self.clock.now()
        with self.subscriptions.lock:
            subs = [s for s in self.subscriptions.items.values() if which(s)]
            for sub in subs:
                sub.reauthorization_required, sub.pause_at = True, now
        for sub in subs:
            self._send_lifecycle(sub, "reauthorizationRequired")
        return len(subs)

    def _dropped(self, notifications: list[dict[str, Any]]) -> None:
        """Dropped change notifications earn their subscriptions a ``missed`` (graph-protocol.md §3)."""
        ids = dict.fromkeys(n["subscriptionId"] for n in notifications if n.get("changeType"))
        for sid in ids:
            sub = self.subscriptions.items.get(sid)
            if sub is not None:
                self._send_lifecycle(sub, "missed")

    def evict_delta_tokens(self, token: str | None = None) -> int:
        """Evict one delta/skip token (or a link holding it), or all: their links then answer 410."""
        return self.delta.evict(token)

    # --- time --------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward and run whatever fell due (expiry, reauthorization, retries)."""
        self.clock.advance(seconds)
        self.tick()

    def tick(self) -> None:
        """Expire subscriptions whose time has passed and send the reauthorization notices due."""
        now = self.clock.now()
        self.expire_subscriptions(now)
        due = []
        with self.subscriptions.lock:
            for sub in self.subscriptions.items.values():
                wait = reauthorization_due(sub, now, self.authorization_lifetime)
                if wait is None:
                    continue
                if not sub.reauthorization_required:
                    sub.pause_at = now + dt.timedelta(seconds=self.reauthorization_grace)
                sub.reauthorization_required = True
                sub.next_notice = now + wait
                due.append(sub)
        for sub in due:
            self._send_lifecycle(sub, "reauthorizationRequired")
        self.delivery.wake()

    def expire_subscriptions(self, now: dt.datetime | None = None) -> list[str]:
        """Drop subscriptions past their expiry (Graph stops delivering to them)."""
        now = now or self.clock.now()
        with self.subscriptions.lock:
            gone = [s.id for s in self.subscriptions.items.values() if s.expiration <= now]
            for sid in gone:
                del self.subscriptions.items[sid]
        for sid in gone:
            self.record("subscription.expired", id=sid)
        return gone

    def _ticker(self) -> None:
        while not self._stopping.wait(TICK_INTERVAL):
            try:
                self.tick()
            except Exception:  # keep ticking whatever one tick hit
                log.exception("emulator tick failed")
