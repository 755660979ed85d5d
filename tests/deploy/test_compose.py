"""compose.yaml hands the whole .env to every graphhook service, publishes the web port on the host's loopback
unless told otherwise, and the ``check`` service passes a configuration that names a ``secret_env`` variable.

Docker Compose is not installed here, so its documented rules are applied to the file: ``env_file`` paths are
relative to the compose file, ``environment`` wins over ``env_file``, ``${VAR:-default}`` / ``${VAR:?message}``
interpolate from ``--env-file``. (https://docs.docker.com/compose/how-tos/environment-variables/envvars-precedence/)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import yaml

from tests.conftest import ROOT
from tests.deploy.test_manifests import documented_variables

COMPOSE = ROOT / "deploy" / "compose.yaml"
GRAPHHOOK_SERVICES = ("check", "web", "worker", "renewer")
# What compose may set differently from .env, and why (anything else must arrive as written in .env).
OVERRIDES = {
    "REDIS_URL": "the Redis service of this file, with REDIS_PASSWORD",
    "GRAPHHOOK_CONFIG": "the path the configuration file is mounted at",
    "GRAPHHOOK_METRICS_BIND": "web: the container's address; the host publishes it on loopback only",
    "PORT": "web: the container port the ports: mapping publishes",
    "PROMETHEUS_MULTIPROC_DIR": "web: the image's default when .env leaves it empty",
}
_VAR = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(value: str, dotenv: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        name, kind, arg = match.groups()
        found = dotenv.get(name, "")
        if kind == "?" and not found:
            raise AssertionError(f"compose would stop: {arg}")
        return found if found or kind != "-" else arg
    return _VAR.sub(one, value)


def read_env_file(path) -> dict[str, str]:
    """KEY=value lines, as compose reads them (an unquoted value's ` #` starts a comment)."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = re.split(r"\s+#", value, maxsplit=1)[0].strip()
    return values


def effective_environment(service: dict, dotenv_path) -> dict[str, str]:
    """The environment compose gives ``service``'s container: its env_file(s), then its ``environment``.

    ``dotenv_path`` is the .env at the root of a checkout; env_file paths resolve from that checkout's deploy/.
    """
    dotenv = read_env_file(dotenv_path)
    env: dict[str, str] = {}
    files = service.get("env_file", [])
    for entry in [files] if isinstance(files, str) else files:
        relative = entry if isinstance(entry, str) else entry["path"]
        path = (dotenv_path.parent / "deploy" / interpolate(relative, dotenv)).resolve()
        assert path == dotenv_path.resolve(), f"env_file {relative} is not the .env the README creates"
        env.update(read_env_file(path))
    for key, value in (service.get("environment") or {}).items():
        env[key] = interpolate(str(value), dotenv)
    return env


def filled_dotenv(tmp_path) -> tuple[dict[str, str], object]:
    """deploy/env.example with a distinct value for every setting, and REDIS_PASSWORD, written where the README
    puts .env (the repository root, simulated by a copy of the layout)."""
    values = {name: f"value-of-{name.lower()}" for name in documented_variables()}
    values["REDIS_PASSWORD"] = "0123456789abcdef"
    root = tmp_path / "checkout"
    (root / "deploy").mkdir(parents=True)
    (root / ".env").write_text("".join(f"{k}={v}   # a trailing comment\n" for k, v in values.items()))
    return values, root / ".env"


def test_every_setting_of_env_example_reaches_every_graphhook_service(tmp_path):
    values, dotenv = filled_dotenv(tmp_path)
    services = compose()["services"]
    assert len(documented_variables()) > 40
    for name in GRAPHHOOK_SERVICES:
        env = effective_environment(services[name], dotenv)
        missing = sorted(set(documented_variables()) - set(env))
        assert not missing, f"{name} never gets {missing}"
        changed = {k for k in documented_variables() if env[k] != values[k]}
        assert changed <= set(OVERRIDES), f"{name} overrides {changed - set(OVERRIDES)} from .env"
        assert env["REDIS_URL"] == "redis://:0123456789abcdef@redis:6379/0" or name == "check"
        assert env["GRAPHHOOK_CONFIG"] == "/etc/graphhook/graphhook.yaml"


def test_web_is_published_on_the_hosts_loopback_unless_asked(tmp_path):
    web = compose()["services"]["web"]
    published = [interpolate(p, {}) for p in web["ports"]]
    assert published == ["127.0.0.1:8000:8000", "127.0.0.1:9108:9108"]
    elsewhere = interpolate(web["ports"][0], {"GRAPHHOOK_WEB_PUBLISH": "0.0.0.0:8443"})
    assert elsewhere == "0.0.0.0:8443:8000"
    env = effective_environment(web, filled_dotenv(tmp_path)[1])
    assert env["PORT"] == "8000"  # what the mapping publishes, whatever PORT .env carries
    assert env["PROMETHEUS_MULTIPROC_DIR"] == "value-of-prometheus_multiproc_dir"  # .env's, when set


def test_check_service_passes_a_configuration_with_a_webhook_secret(tmp_path):
    # The bug of issue 20: `check` got GRAPHHOOK_CONFIG alone, so a `secret_env:` webhook failed it and nothing started.
    config = tmp_path / "graphhook.yaml"
    config.write_text("version: 1\nmailboxes: []\nrules: []\nwebhooks:\n  soar:\n"
                      "    url: https://soar.example.com/hooks/graphhook\n    secret_env: SOAR_WEBHOOK_SECRET\n")
    # .env as the README makes it: env.example copied, a few values filled in (comments kept).
    secret = "a-webhook-signing-secret-of-32-ch"
    fill = {"SOAR_WEBHOOK_SECRET": secret, "AZURE_TENANT_ID": "tenant", "AZURE_CLIENT_ID": "client"}
    lines = [f"{line.split('=')[0]}={fill[line.split('=')[0]]}" if line.split("=")[0] in fill else line
             for line in (ROOT / "deploy" / "env.example").read_text().splitlines()]
    dotenv = tmp_path / "checkout" / ".env"
    (dotenv.parent / "deploy").mkdir(parents=True)
    dotenv.write_text("\n".join(lines) + "\nREDIS_PASSWORD=0123456789abcdef\n")
    service = compose()["services"]["check"]
    env = effective_environment(service, dotenv)
    assert env["SOAR_WEBHOOK_SECRET"] == secret
    env = {**env, "GRAPHHOOK_CONFIG": str(config), "PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "graphhook", *service["command"][1:]]
    passed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    without = {k: v for k, v in env.items() if k != "SOAR_WEBHOOK_SECRET"}
    failed = subprocess.run(argv, env=without, capture_output=True, text=True, timeout=60)
    assert failed.returncode != 0 and "SOAR_WEBHOOK_SECRET" in failed.stdout + failed.stderr
