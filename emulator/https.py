"""The emulator's HTTPS server: cheroot, a production WSGI server, so connections are kept alive as Graph keeps them.

Werkzeug's development server closes every connection after one response (and waits 10 ms for
stray request bytes first), so every Graph call a client made cost a new TLS handshake, which
Microsoft's servers do not make it pay. cheroot (CherryPy's server) serves HTTP/1.1 keep-alive
from a thread pool, over TLS with Python's ``ssl``.

Each request's socket is in ``environ["emulator.socket"]``, so a fault rule can reset the
connection (``emulator/faults.py``).
"""

from __future__ import annotations

import ssl
import threading
from pathlib import Path
from typing import Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

THREADS = 128  # requests served at once: clients keep up to 32 jobs in flight per worker process
IDLE_TIMEOUT = 30  # s a kept-alive connection may sit idle


class _Gateway(wsgi.Gateway_10):
    """cheroot's WSGI 1.0 gateway, with the request's socket in the environ."""

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ["emulator.socket"] = self.req.conn.socket
        return environ


class HTTPSServer:
    """``app`` served over TLS on ``host``:``port`` (0: a free port) from a background thread."""

    def __init__(self, app: Any, host: str, port: int, cert: Path, key: Path) -> None:
        self._server = wsgi.Server((host, port), app, numthreads=THREADS, timeout=IDLE_TIMEOUT,
                                   request_queue_size=128, shutdown_timeout=1)
        self._server.gateway = _Gateway
        adapter = BuiltinSSLAdapter(str(cert), str(key))
        adapter.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._server.ssl_adapter = adapter
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.bind_addr[1])

    def start(self) -> "HTTPSServer":
        self._server.prepare()  # binds: the port is known from here on
        self._thread = threading.Thread(target=self._server.serve, name="emulator-https", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
