"""deploy/env.example lists every setting graphhook reads, and nothing it does not."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from tests.deploy.test_manifests import documented_variables

# Read outside graphhook/core/settings.py: by the Procfile/Dockerfile shell line, gunicorn and prometheus_client.
PROCESS_VARIABLES = {"PORT", "WEB_CONCURRENCY", "GUNICORN_WORKER_CONNECTIONS", "GUNICORN_TIMEOUT", "GUNICORN_GRACEFUL_TIMEOUT",
                     "PROMETHEUS_MULTIPROC_DIR"}


def settings_variables() -> set[str]:
    """Every environment variable ``Settings.from_env`` reads."""
    source = (ROOT / "graphhook" / "core" / "settings.py").read_text()
    names = set(re.findall(r'env\.get\(\s*"([A-Z][A-Z0-9_]+)"', source))
    names |= set(re.findall(r'_(?:int|bool|float)\(env,\s*"([A-Z][A-Z0-9_]+)"', source))
    return names


def test_every_setting_is_documented():
    read = settings_variables()
    assert len(read) > 10  # the pattern above still finds them
    missing = sorted(read - documented_variables())
    assert not missing, f"add these to deploy/env.example with their default and unit: {missing}"


def secret_env_names() -> set[str]:
    """Variables the example configuration names with ``secret_env:`` (webhook secrets)."""
    return set(re.findall(r"secret_env:\s*([A-Z][A-Z0-9_]+)", (ROOT / "graphhook.example.yaml").read_text()))


def test_nothing_documented_is_unread():
    stale = sorted(documented_variables() - settings_variables() - PROCESS_VARIABLES - secret_env_names())
    assert not stale, f"deploy/env.example documents variables nothing reads: {stale}"


def test_web_variables_are_the_ones_the_procfile_uses():
    procfile = (ROOT / "Procfile").read_text()
    for name in PROCESS_VARIABLES - {"PROMETHEUS_MULTIPROC_DIR"}:
        assert f"${{{name}" in procfile, f"{name} is documented for the web process but the Procfile ignores it"
