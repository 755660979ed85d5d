"""gunicorn settings for the receiver: ``gunicorn -c python:receiver.gunicorn_conf "receiver.app:create_app()"``.

Hooks live here (bind, workers etc. come from the command line or
``GUNICORN_CMD_ARGS``): they keep Prometheus multiprocess metrics right
(https://prometheus.github.io/client_python/multiprocess/) and serve them on a
private listener from the master (``GRAPHHOOK_METRICS_BIND:GRAPHHOOK_METRICS_PORT``,
:func:`receiver.metrics.serve_private`): the public port never shows them
without credentials, and a scrape never takes a worker's slot from Graph.
"""

from __future__ import annotations

import os
import shutil
import warnings
from typing import Any

from gevent.monkey import MonkeyPatchWarning
from gunicorn.glogging import Logger

from graphhook.core.errors import ConfigError
from graphhook.core.logs import JsonFormatter, RedactingFilter
from graphhook.core.settings import Settings


class GunicornLogger(Logger):
    """gunicorn's error and access logs as JSON lines (``GRAPHHOOK_LOG_FORMAT=text`` keeps gunicorn's own), redacted."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        try:
            settings: Any = Settings.from_env()
        except ConfigError:
            settings = None
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if getattr(settings, "log_format", "json") == "json":
                    handler.setFormatter(JsonFormatter("web"))
                if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                    handler.addFilter(RedactingFilter())


logger_class = GunicornLogger

# Slow clients: on gthread or sync every connection holds a thread from its first byte, so ten sockets
# trickling a body starve Graph's POSTs. The gevent worker gives each connection a greenlet instead
# (up to worker_connections per worker), bounds the wait for a request's headers by keepalive
# (gunicorn/workers/ggevent.py timeout_ctx), and receiver/bodydeadline.py bounds the body.
# https://docs.gunicorn.org/en/stable/design.html#async-workers. The command line can override these.
worker_class = "gevent"
# gunicorn's master imports ssl before the worker patches it (as in every gevent deployment); the receiver
# makes no TLS connection through a module that kept a direct reference, so the warning is noise.
warnings.filterwarnings("ignore", message="Monkey-patching ssl after ssl", category=MonkeyPatchWarning)
worker_connections = 1000  # open connections per worker process; past that, new ones wait in the backlog
keepalive = 5  # s: an idle keep-alive connection, and the wait for each request's headers


def on_starting(server: Any) -> None:
    """Empty ``PROMETHEUS_MULTIPROC_DIR`` so counters do not carry over from an earlier run."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def when_ready(server: Any) -> None:
    """Start the private metrics listener in the master: every worker's intake metrics, plus Redis's."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        server.log.error("private metrics listener not started: %s", exc)
        return
    if not settings.metrics_port:
        return
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Without the shared directory the master cannot see what its workers counted.
        server.log.error("private metrics listener not started: GRAPHHOOK_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR")
        return
    from graphhook.core.redisconn import connect
    from receiver.metrics import private_registry, serve_private

    # Short timeouts: a scrape while Redis is down answers with the intake metrics alone.
    r = connect(settings, socket_timeout=2.0, socket_connect_timeout=2.0)
    if serve_private(settings, private_registry(settings, r)):
        server.log.info("metrics on http://%s:%d/metrics (private)", settings.metrics_bind, settings.metrics_port)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges (counters and histograms are kept, as Prometheus expects)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
