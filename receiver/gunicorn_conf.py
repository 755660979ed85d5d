"""gunicorn settings for the receiver: ``gunicorn -c python:receiver.gunicorn_conf "receiver.app:create_app()"``.

Only hooks live here (bind, workers etc. come from the command line or
``GUNICORN_CMD_ARGS``): they keep Prometheus multiprocess metrics right
(https://prometheus.github.io/client_python/multiprocess/).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

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


def on_starting(server: Any) -> None:
    """Empty ``PROMETHEUS_MULTIPROC_DIR`` so counters do not carry over from an earlier run."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges (counters and histograms are kept, as Prometheus expects)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
