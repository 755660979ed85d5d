"""gunicorn settings for the receiver: ``gunicorn -c python:receiver.gunicorn_conf "receiver.app:create_app()"``.

Only hooks live here (bind, workers etc. come from the command line or
``GUNICORN_CMD_ARGS``): they keep Prometheus multiprocess metrics right
(https://prometheus.github.io/client_python/multiprocess/).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

logger_class = "receiver.logs.GunicornLogger"  # gunicorn's own error and access lines as JSON, redacted too


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
