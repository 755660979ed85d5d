"""A webhook sink: a real HTTP server on 127.0.0.1 that verifies graphhook's signatures and counts
deliveries per message id — the SOAR stand-in of the demo, the soak harness and tests."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Delivery:
    """One POST the sink accepted."""

    message_id: str
    event_id: str
    at: float


class HttpSink:
    """A real HTTP server on 127.0.0.1 taking POSTs on ``url``; subclasses decide what a POST means.

    ``receive(path, headers, body)`` returns the status to answer (called on the server's threads;
    ``headers`` look names up case-insensitively).
    """

    def __init__(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = sink.receive(self.path, self.headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name=type(self).__name__, daemon=True)

    def receive(self, path: str, headers: Message, body: bytes) -> int:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self):
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class WebhookSink(HttpSink):
    """Counts signed webhook deliveries per message id.

    A POST whose signature does not verify is answered 401 and counted in ``bad_signatures``;
    it never counts as a delivery.
    """

    def __init__(self, secret: str) -> None:
        super().__init__()
        self._secret = secret
        self.deliveries: list[Delivery] = []
        self.bad_signatures = 0
        self._lock = threading.Lock()

    def receive(self, path: str, headers: Message, body: bytes) -> int:
        from workers.triggers.webhooks import SIGNATURE_HEADER, verify

        try:
            verify(body, headers.get(SIGNATURE_HEADER), secret=self._secret)
            event = json.loads(body)
            item = Delivery(str(event["email"]["originalId"]), str(event["id"]), time.time())
        except Exception:  # noqa: BLE001 — anything unverifiable is refused, not counted
            with self._lock:
                self.bad_signatures += 1
            return 401
        with self._lock:
            self.deliveries.append(item)
        return 200

    def snapshot(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def posts_per_message(self) -> Counter:
        """POSTs received per message id (a redelivery of one event counts again)."""
        return Counter(d.message_id for d in self.snapshot())

    def events_per_message(self) -> dict[str, set[str]]:
        """Distinct event ids per message id: more than one means the trigger fired twice."""
        out: dict[str, set[str]] = defaultdict(set)
        for d in self.snapshot():
            out[d.message_id].add(d.event_id)
        return out

    def first_delivery(self) -> dict[str, float]:
        """When each message's first delivery arrived (unix seconds)."""
        out: dict[str, float] = {}
        for d in self.snapshot():
            out.setdefault(d.message_id, d.at)
        return out


# --- supervised worker processes -----------------------------------------------------------------
