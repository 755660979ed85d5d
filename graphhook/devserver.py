"""Serve a WSGI app on a background thread, over HTTPS when given a certificate (demo and tests)."""

from __future__ import annotations

import ssl
import threading
from pathlib import Path
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class BackgroundServer:
    """A threaded werkzeug server; ``url`` is known once started."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0,
                 cert: Path | None = None, key: Path | None = None) -> None:
        context = None
        if cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(cert, key)
        self.scheme = "https" if context else "http"
        self._server = make_server(host, port, app, threaded=True, ssl_context=context, request_handler=_QuietHandler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="devserver", daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self._server.server_address[0]}:{self._server.server_port}"

    def start(self) -> "BackgroundServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
