"""Workers stop warmly: a SIGTERM while a job runs lets the job finish, then the process exits.

Heroku's dyno manager sends SIGTERM to *every* process of the dyno (30 s before SIGKILL), so the
Procfile's worker command is tested that way. Kubernetes, Docker and systemd with KillMode=mixed
signal only the main process, which is how the manifests' ``graphhook worker`` is tested.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from rq.job import JobStatus

from graphhook.core import jobformat
from tests.conftest import ROOT, wait_for
from tests.deploy.test_procfile import procfile

JOB_SECONDS = 2.0


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += process_tree(int(child))
    return found


@pytest.fixture
def worker_env(emulator, redis_server, redis_client):
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, **emulator.environment(), "REDIS_URL": redis_server.url, "PYTHONPATH": str(ROOT),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "GRAPHHOOK_QUEUE": "graphhook"}


def run_job_then_terminate(command: list[str], env: dict[str, str], redis_url: str, tmp_path,
                           *, whole_tree: bool) -> tuple[int, redis.Redis, object, int]:
    r = redis.Redis.from_url(redis_url)
    log = open(tmp_path / "worker.log", "wb")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        job = jobformat.queue("graphhook", r).enqueue("tests.deploy.jobs.slow_job", redis_url, "shutdown",
                                                       JOB_SECONDS)
        wait_for(lambda: r.get("shutdown:started"), timeout=30)
        targets = process_tree(proc.pid) if whole_tree else [proc.pid]
        for pid in targets:
            os.kill(pid, signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    job.refresh()
    return code, r, job, proc.pid


def test_procfile_worker_finishes_its_job_when_heroku_signals_every_process(worker_env, redis_server, tmp_path):
    command = procfile()["worker"]
    code, r, job, _ = run_job_then_terminate(["bash", "-c", command], worker_env, redis_server.url, tmp_path,
                                          whole_tree=True)
    log = (tmp_path / "worker.log").read_text()
    assert r.get("shutdown:done") is not None, log
    assert job.get_status() == JobStatus.FINISHED, log
    assert code == 0, log


def test_worker_finishes_its_job_when_only_the_main_process_is_signalled(worker_env, redis_server, tmp_path):
    # The command of the Kubernetes worker Deployment, the compose worker and the systemd unit.
    code, r, job, main_pid = run_job_then_terminate(["graphhook", "worker"], worker_env, redis_server.url,
                                                    tmp_path, whole_tree=False)
    log = (tmp_path / "worker.log").read_text()
    assert r.get("shutdown:done") is not None, log
    assert int(r.get("shutdown:started")) == main_pid  # a thread of the worker process, not a forked horse
    assert job.get_status() == JobStatus.FINISHED, log
    assert code == 0, log


def test_forking_worker_finishes_its_job_when_only_the_main_process_is_signalled(worker_env, redis_server,
                                                                                 tmp_path):
    code, r, job, main_pid = run_job_then_terminate(["graphhook", "worker", "--fork"], worker_env,
                                                    redis_server.url, tmp_path, whole_tree=False)
    log = (tmp_path / "worker.log").read_text()
    assert r.get("shutdown:done") is not None, log
    assert int(r.get("shutdown:started")) != main_pid  # the job really ran in a forked work horse
    assert job.get_status() == JobStatus.FINISHED, log
    assert code == 0, log
