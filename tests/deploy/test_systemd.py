"""The systemd units' sandbox: ``systemd-analyze security --offline=yes`` scores each unit 2.0 or below, the
directives that score comes from are there even where systemd-analyze is not, and what they forbid is what
graphhook never needs: MemoryDenyWriteExecute is tried for real, running the demo (receiver, workers, Graph
fetches, triggers) and the web unit's gunicorn under the kernel's own memory-deny-write-execute (PR_SET_MDWE,
which refuses writable-and-executable memory as systemd's seccomp rule does).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from graphhook.redis_server import free_port
from tests.conftest import ROOT, STARTUP_GRACE, answers, wait_for
from tests.deploy.test_manifests import SYSTEMD, unit
from tests.deploy.test_manifests import installed_copies as manifest_copies

SERVICES = ("graphhook-web.service", "graphhook-worker@.service", "graphhook-renewer.service")
MAX_EXPOSURE = 2.0


def installed_copies(tmp_path: Path) -> list[str]:
    """The service units only, installed as systemd-analyze reads them (tests/deploy/test_manifests.py)."""
    return [name for name in manifest_copies(tmp_path) if name.endswith(".service")]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_every_unit_scores_ok_in_systemd_analyze_security(tmp_path):
    names = installed_copies(tmp_path)
    assert len(names) == len(SERVICES)
    for name in names:
        proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", f"./{name}"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", proc.stdout)
        assert match, proc.stdout + proc.stderr
        assert float(match.group(1)) <= MAX_EXPOSURE, f"{name} scores {match.group(1)} {match.group(2)}:\n{proc.stdout}"


@pytest.mark.parametrize("name", SERVICES)
def test_every_unit_carries_the_sandbox(name):
    service = unit(name)["Service"]
    text = (SYSTEMD / name).read_text()
    assert re.search(r"^CapabilityBoundingSet=$", text, flags=re.M), "an empty bounding set: no capability at all"
    assert service["RestrictAddressFamilies"].split() == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert "SystemCallFilter=@system-service" in text and service["SystemCallArchitectures"] == "native"
    for directive in ("NoNewPrivileges", "PrivateDevices", "PrivateTmp", "ProtectKernelTunables",
                      "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "RestrictNamespaces",
                      "RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute", "ProtectHome"):
        assert service[directive] == "true", directive
    assert service["ProtectSystem"] == "strict" and service["ReadWritePaths"] == "/var/lib/graphhook"
    assert service["User"] == "graphhook" and service["WorkingDirectory"] == "/var/lib/graphhook"


def test_units_stop_within_their_grace():
    # Heroku-independent: systemd waits TimeoutStopSec after SIGTERM, then SIGKILLs. The worker's outlasts RQ's
    # 180 s job timeout (test_manifests), the web's gunicorn's graceful timeout, the renewer's one Graph call.
    web = unit("graphhook-web.service")["Service"]
    graceful = int(re.search(r"--graceful-timeout (\d+)", web["ExecStart"]).group(1))
    assert int(web["TimeoutStopSec"]) > graceful
    assert unit("graphhook-renewer.service")["Service"]["KillMode"] == "mixed"


# --- MemoryDenyWriteExecute, tried for real ---------------------------------------------------

MDWE = """import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN: kept across fork and exec
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")
os.execvp(sys.argv[1], sys.argv[1:])
"""


def mdwe_supported() -> bool:
    probe = subprocess.run([sys.executable, "-c", MDWE, sys.executable, "-c",
                            "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)"],
                           capture_output=True, text=True, timeout=60)
    return probe.returncode != 0 and "Permission denied" in probe.stderr  # W+X refused: the guard is on


needs_mdwe = pytest.mark.skipif(not sys.platform.startswith("linux") or not mdwe_supported(),
                                reason="the kernel has no PR_SET_MDWE (Linux 6.3+)")


def under_mdwe(*argv: str) -> list[str]:
    return [sys.executable, "-c", MDWE, *argv]


@needs_mdwe
def test_the_demo_runs_under_memory_deny_write_execute(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REQUESTS_CA_BUNDLE")}
    env.update(PYTHONPATH=str(ROOT), HOME=str(tmp_path))
    demo = subprocess.run(under_mdwe(sys.executable, "-m", "graphhook", "demo", "--messages", "3"), cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=110)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "OK: every message fired its trigger exactly once" in demo.stdout


@needs_mdwe
def test_the_web_units_gunicorn_answers_under_memory_deny_write_execute(redis_server, tmp_path):
    argv = shlex.split(unit("graphhook-web.service")["Service"]["ExecStart"])
    port = free_port()
    argv = [str(Path(sys.executable).parent / "gunicorn"), *argv[1:]]
    argv = [a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_server.url, "HOME": str(tmp_path),
           "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555", "AZURE_TENANT_ID": "tenant",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "GRAPHHOOK_METRICS_PORT": "0"}
    log = open(tmp_path / "web.log", "wb")
    proc = subprocess.Popen(under_mdwe(*argv), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz", proc), timeout=STARTUP_GRACE)
        token = "Validation: Testing client application reachability"
        reply = requests.post(f"http://127.0.0.1:{port}/notifications", params={"validationToken": token}, timeout=5)
        assert reply.status_code == 200 and reply.text == token
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    text = (tmp_path / "web.log").read_text()
    assert "Control socket listening" in text and "Control server error" not in text, text  # a writable HOME
