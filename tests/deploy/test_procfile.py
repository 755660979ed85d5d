"""The Procfile: every process type names real code, and the web and release lines really run."""

from __future__ import annotations

import importlib
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from graphhook.cli import build_parser
from graphhook.redis_server import free_port
from tests.conftest import ROOT, wait_for

PROCESS_TYPES = {"web", "worker", "renewer", "release"}
APP_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*(\(.*\))?")  # gunicorn's module:variable or module:factory()


def procfile(path: Path = ROOT / "Procfile") -> dict[str, str]:
    """Process type → command, as Heroku and honcho read the file."""
    entries = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, command = line.partition(":")
        entries[name.strip()] = command.strip()
    return entries


def gunicorn_app(argv: list[str]) -> tuple[str, str]:
    """(config module, ``module:factory()``) from a gunicorn command line."""
    config = argv[argv.index("-c") + 1] if "-c" in argv else ""
    app = [a for a in argv[1:] if APP_SPEC.fullmatch(a)]
    assert len(app) == 1, f"expected one application argument in {argv}"
    return config, app[0]


def assert_real_factory(spec: str) -> None:
    """``module:create_app()`` names an importable module with a callable ``create_app``."""
    module_name, _, call = spec.partition(":")
    assert call == "create_app()", spec
    module = importlib.import_module(module_name)
    assert callable(getattr(module, "create_app", None)), f"{module_name} has no create_app"


def assert_graphhook_command(argv: list[str]) -> None:
    """``graphhook SUB …`` parses with the real command line and reaches a sub-command."""
    assert argv[0] == "graphhook", argv
    args = build_parser().parse_args(argv[1:])
    assert callable(args.func), argv


def test_procfile_has_the_four_process_types():
    assert set(procfile()) == PROCESS_TYPES


def test_web_serves_the_receiver_factory_on_port_from_the_environment():
    argv = shlex.split(procfile()["web"])
    assert argv[0] == "gunicorn"
    config, app = gunicorn_app(argv)
    assert_real_factory(app)
    assert config.startswith("python:")
    importlib.import_module(config.removeprefix("python:"))
    assert any("${PORT" in a for a in argv), "web must bind Heroku's $PORT"
    for variable in ("WEB_CONCURRENCY", "GUNICORN_TIMEOUT"):
        assert f"${{{variable}" in procfile()["web"]


@pytest.mark.parametrize("kind", ["worker", "renewer", "release"])
def test_other_process_types_are_graphhook_commands(kind):
    assert_graphhook_command(shlex.split(procfile()[kind]))


def test_release_is_the_configuration_check():
    assert shlex.split(procfile()["release"])[1:] == ["check", "--config-only"]


def _shell_env(**extra: str) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            **extra}


def test_release_line_passes_the_starter_config_and_fails_a_broken_one(tmp_path):
    command = ["bash", "-c", procfile()["release"]]
    ok = subprocess.run(command, env=_shell_env(GRAPHHOOK_CONFIG=str(ROOT / "deploy/graphhook.starter.yaml")),
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "graphhook.yaml"
    broken.write_text("mailboxes: [not-an-address]\n")
    bad = subprocess.run(command, env=_shell_env(GRAPHHOOK_CONFIG=str(broken)), capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode != 0
    assert "[FAIL] configuration" in bad.stdout and "not-an-address" in bad.stdout


def test_web_line_runs_gunicorn_answering_probes_and_handshake(redis_server, tmp_path):
    port = free_port()
    env = _shell_env(PORT=str(port), WEB_CONCURRENCY="1", REDIS_URL=redis_server.url,
                     AZURE_CLIENT_ID="11111111-2222-3333-4444-555555555555", AZURE_TENANT_ID="tenant",
                     PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    log = open(tmp_path / "web.log", "wb")
    proc = subprocess.Popen(["bash", "-c", procfile()["web"]], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return requests.get(f"{base}/healthz", timeout=5).status_code == 200
        except requests.RequestException:  # refused while gunicorn binds, or a read timeout while its worker boots
            assert proc.poll() is None, (tmp_path / "web.log").read_text()
            return False

    try:
        wait_for(healthy, timeout=60)  # a guard against a hang; gunicorn is up in seconds
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
        token = "Validation: Testing client application reachability"
        reply = requests.post(f"{base}/notifications", params={"validationToken": token}, timeout=5)
        assert reply.status_code == 200 and reply.text == token
        assert reply.headers["Content-Type"].startswith("text/plain")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # as Heroku stops a dyno
        code = proc.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "web.log").read_text()
