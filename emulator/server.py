"""The emulator as one object: state, the Flask app, the HTTPS server and notification delivery.

Python API (tests, demo, benchmarks)::

    emu = Emulator(workdir)            # generates a CA, a tenant and an app registration
    emu.start()                        # https://127.0.0.1:<port>, CA at emu.ca_path
    emu.add_user("alice@contoso.com")
    emu.deliver("alice@contoso.com", {"subject": "Hi", "from": "bob@fabrikam.com"})
    emu.stop()

The same operations are exposed over HTTP under ``/_emulator`` (see ``admin.py``).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import socket
import ssl
import struct
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import requests
from flask import Flask, g, request
from werkzeug.serving import WSGIRequestHandler, make_server

from . import admin, identity, mail, subscriptions
from .delivery import Delivery, DeliveryOptions
from .faults import ConnectionReset, Faults
from .graphapi import authenticate
from .identity import App, Directory
from .mailstore import MailStore
from .pki import CertificateAuthority
from .richcrypto import encrypt_resource, load_certificate
from .subscriptions import SubscriptionStore, format_time

log = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without the access log on stderr (the request log holds it)."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class Emulator:
    """A local Microsoft Graph and identity platform for one tenant."""

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
    ) -> None:
        if expiry_mode not in ("reject", "clamp"):
            raise ValueError(f"expiry_mode must be 'reject' or 'clamp', got {expiry_mode!r}")
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="graphhook-emulator-"))
        self.ca = CertificateAuthority(self.workdir)
        self.directory = Directory(tenant_id or str(uuid.uuid4()))
        self.app_registration = self.directory.add_app(
            App(client_id=client_id or str(uuid.uuid4()), secret=client_secret or secrets.token_urlsafe(30))
        )
        self.mail = MailStore()
        self.subscriptions = SubscriptionStore()
        self.faults = Faults()
        self.expiry_mode = expiry_mode
        self.revalidate_on_patch = False
        self.outbound = requests.Session()
        self.outbound.trust_env = False  # never route loopback deliveries through a proxy
        self.outbound_verify: Any = str(self.ca.cert_path)
        self.delivery = Delivery(self.outbound, self.outbound_verify, delivery, on_event=self.record)
        self.request_log: deque[dict[str, Any]] = deque(maxlen=100_000)
        self.events: deque[dict[str, Any]] = deque(maxlen=100_000)
        self._host, self._port = host, port
        self._server = None
        self._thread: threading.Thread | None = None
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
        return f"https://{host}:{self._server.server_port}"

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

    # --- the web app -------------------------------------------------------------------------
    def _build_app(self) -> Flask:
        app = Flask("graphhook-emulator")
        app.config["EMULATOR"] = self
        app.register_blueprint(identity.bp)
        app.register_blueprint(subscriptions.bp)
        app.register_blueprint(mail.bp)
        app.register_blueprint(admin.bp)

        @app.before_request
        def _before():
            g.started = time.monotonic()
            if request.path.startswith("/v1.0"):
                error = authenticate()
                if error is not None:
                    return error
                self.faults.maybe_fail("graph")
            return None

        @app.after_request
        def _after(response):
            if not request.path.startswith("/_emulator"):
                self.request_log.append({
                    "method": request.method, "path": request.path, "query": request.query_string.decode(),
                    "status": response.status_code, "app": g.get("app_id"),
                    "ms": round((time.monotonic() - g.get("started", time.monotonic())) * 1000, 2),
                })
            return response

        @app.errorhandler(ConnectionReset)
        def _reset(_exc):
            sock = request.environ.get("werkzeug.socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            return "", 500

        return app

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Emulator":
        """Serve HTTPS on a background thread; return self."""
        pair = self.ca.issue("emulator")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(pair.cert_path, pair.key_path)
        self._server = make_server(self._host, self._port, self.app, threaded=True, ssl_context=context,
                                   request_handler=_QuietHandler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="emulator-http", daemon=True)
        self._thread.start()
        self.delivery.start()
        return self

    def stop(self) -> None:
        self.delivery.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- state changes -----------------------------------------------------------------------
    def record(self, kind: str, **fields: Any) -> None:
        self.events.append({"event": kind, "at": time.time(), **fields})

    def add_user(self, address: str, display_name: str | None = None):
        return self.mail.add_user(address, display_name)

    def load_encryption_certificate(self, encoded: str):
        return load_certificate(encoded)

    def deliver(self, mailbox: str, spec: dict[str, Any], folder: str = "inbox") -> dict[str, Any]:
        """Put a new message in ``mailbox`` and notify matching subscriptions (``created``)."""
        user, target, message = self.mail.add_message(mailbox, spec, folder)
        self.record("message.delivered", mailbox=user.mail, id=message["id"], subject=message["subject"])
        self.notify_change(user.id, target.id, message, "created")
        return message

    def notify_change(self, user_id: str, folder_id: str, message: dict[str, Any], change: str) -> int:
        """Queue a change notification for every subscription watching this folder; return how many."""
        user = self.mail.users[user_id]
        folder = user.folders[folder_id]
        aliases = {folder.display_name.lower(), folder.well_known or ""}
        subs = self.subscriptions.matching(user_id, folder_id, aliases, change)
        for sub in subs:
            resource = f"Users/{user_id}/Messages/{message['id']}"
            notification: dict[str, Any] = {
                "subscriptionId": sub.id,
                "subscriptionExpirationDateTime": format_time(sub.expiration),
                "changeType": change,
                "resource": resource,
                "resourceData": {
                    "@odata.type": "#Microsoft.Graph.Message",
                    "@odata.id": resource,
                    "@odata.etag": f'W/"{message["changeKey"]}"',
                    "id": message["id"],
                },
                "clientState": sub.client_state,
                "tenantId": self.tenant_id,
            }
            if sub.include_resource_data and sub.encryption_certificate:
                fields = _selected_fields(sub.resource)
                data = {k: v for k, v in message.items() if k in fields or k == "id"}
                data["@odata.type"] = "#Microsoft.Graph.Message"
                data["@odata.id"] = resource
                notification["encryptedContent"] = encrypt_resource(
                    data, load_certificate(sub.encryption_certificate), sub.encryption_certificate_id or ""
                )
                notification["validationTokens"] = [self.directory.issue_validation_token(sub.application_id)]
            self.delivery.submit(sub.notification_url, notification)
        return len(subs)

    def lifecycle(self, subscription_id: str, event: str) -> None:
        """Send a lifecycle event (``reauthorizationRequired``, ``subscriptionRemoved``, ``missed``)."""
        if event not in ("reauthorizationRequired", "subscriptionRemoved", "missed"):
            raise ValueError(f"unknown lifecycle event {event!r}")
        with self.subscriptions.lock:
            sub = self.subscriptions.items.get(subscription_id)
            if sub is None:
                raise KeyError(subscription_id)
            if event == "subscriptionRemoved":
                del self.subscriptions.items[subscription_id]
            elif event == "reauthorizationRequired":
                sub.reauthorization_required = True
        url = sub.lifecycle_url or sub.notification_url
        self.delivery.submit(url, {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": format_time(sub.expiration),
            "tenantId": self.tenant_id,
            "clientState": sub.client_state,
            "lifecycleEvent": event,
        })
        self.record("lifecycle.sent", id=sub.id, lifecycleEvent=event)

    def expire_subscriptions(self, now: dt.datetime | None = None) -> list[str]:
        """Drop subscriptions past their expiry (Graph stops delivering to them)."""
        now = now or dt.datetime.now(dt.timezone.utc)
        with self.subscriptions.lock:
            gone = [s.id for s in self.subscriptions.items.values() if s.expiration <= now]
            for sid in gone:
                del self.subscriptions.items[sid]
        return gone


def _selected_fields(resource: str) -> set[str]:
    from urllib.parse import parse_qs, urlsplit

    query = parse_qs(urlsplit(resource).query)
    select = query.get("$select", [""])[0]
    wanted = {f.strip().lower() for f in select.split(",") if f.strip()}
    from .mailstore import build_message

    return {k for k in build_message({}) if k.lower() in wanted}
