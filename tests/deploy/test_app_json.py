"""app.json (Heroku deploy button): valid, consistent with the Procfile, every variable documented."""

from __future__ import annotations

import json

from graphhook.core.settings import Settings
from tests.conftest import ROOT
from tests.deploy.test_manifests import documented_variables
from tests.deploy.test_procfile import procfile
from workers.triggers.config import validate_config

# Variables Heroku or gunicorn read, not graphhook's Settings; still documented in env.example.
PLATFORM_VARIABLES = {"WEB_CONCURRENCY", "GUNICORN_WORKER_CONNECTIONS", "GUNICORN_TIMEOUT", "GUNICORN_GRACEFUL_TIMEOUT",
                      "PROMETHEUS_MULTIPROC_DIR", "PORT"}


def app_json() -> dict:
    return json.loads((ROOT / "app.json").read_text())


def test_formation_runs_every_long_lived_procfile_process():
    formation = app_json()["formation"]
    assert set(formation) == set(procfile()) - {"release"}
    assert formation["renewer"]["quantity"] == 1
    assert all(entry["quantity"] >= 1 for entry in formation.values())


def test_heroku_redis_is_provisioned_as_redis_url():
    addons = app_json()["addons"]
    redis = [a for a in addons if a["plan"].startswith("heroku-redis")]
    assert len(redis) == 1 and redis[0].get("as", "REDIS") == "REDIS"  # the add-on sets REDIS_URL


def test_every_variable_is_described_and_documented_in_env_example():
    env = app_json()["env"]
    documented = documented_variables()
    for name, spec in env.items():
        assert len(spec.get("description", "")) > 20, f"{name} needs a description"
        assert name in documented, f"{name} is in app.json but not in deploy/env.example"


def test_credentials_are_required_and_never_given_a_value():
    env = app_json()["env"]
    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "PUBLIC_URL"):
        assert env[name]["required"] is True and "value" not in env[name]
    assert env["GRAPHHOOK_CACHE_KEY"]["generator"] == "secret"


def test_defaults_are_values_graphhook_accepts():
    env = app_json()["env"]
    values = {name: spec["value"] for name, spec in env.items() if "value" in spec}
    # Heroku Redis serves rediss:// with a self-signed certificate.
    assert values["REDIS_SSL_CERT_REQS"] == "none"
    settings = Settings.from_env({k: v for k, v in values.items() if k not in PLATFORM_VARIABLES})
    assert settings.queue_name == values["GRAPHHOOK_QUEUE"]
    # The release phase validates this file: it must exist in the repository and pass.
    validate_config(ROOT / values["GRAPHHOOK_CONFIG"], env={})


def test_heroku_buildpack_finds_an_install_file():
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    # graphhook itself, its dependencies at the pinned versions the tests passed with (tests/deploy/test_image.py).
    assert [line for line in lines if line and not line.startswith("#")] == ["-c constraints.txt", "."]


def test_postdeploy_script_is_a_real_graphhook_command():
    import shlex

    from tests.deploy.test_procfile import assert_graphhook_command

    script = app_json()["scripts"]["postdeploy"]
    command = script.split("||")[0]
    assert_graphhook_command(shlex.split(command))
