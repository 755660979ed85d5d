"""Kubernetes manifests, compose file, systemd units and Dockerfile agree with the code.

Names, ports, commands and probe paths are read from the files and checked against the real
receiver (its url_map), the real command line parser and RQ's own queue naming.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rq import Queue

from graphhook.core import jobformat
from receiver.app import create_app
from tests.conftest import ROOT
from tests.deploy.test_procfile import assert_graphhook_command, assert_real_factory, gunicorn_app
from workers.triggers.config import validate_config

K8S = ROOT / "deploy" / "kubernetes"
SYSTEMD = ROOT / "deploy" / "systemd"
NON_SETTINGS = {"REDIS_PASSWORD"}  # read by the Redis server and KEDA, not by graphhook


def documented_variables() -> set[str]:
    """Every NAME= line of deploy/env.example."""
    text = (ROOT / "deploy" / "env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.M))


def manifests() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def find(kind: str, name: str) -> dict:
    found = [d for d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}"
    return found[0]


def deployments() -> list[dict]:
    return [d for d in manifests() if d["kind"] == "Deployment" and d["metadata"]["name"] != "graphhook-redis"]


def main_container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.fixture(scope="module")
def url_map(redis_server):
    import redis

    from graphhook.core.settings import Settings

    app = create_app(Settings.from_env({"REDIS_URL": redis_server.url}),
                     redis_client=redis.Redis.from_url(redis_server.url))
    return {rule.rule: rule.methods for rule in app.url_map.iter_rules()}


def test_every_manifest_parses_and_lives_in_one_namespace():
    docs = manifests()
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ConfigMap", "Secret", "ScaledObject",
                                         "TriggerAuthentication", "Ingress", "Namespace"}
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "graphhook", d["metadata"]["name"]


def workloads() -> list[dict]:
    """Every object that runs pods (Deployments and the Redis StatefulSet)."""
    return [d for d in manifests() if d["kind"] in ("Deployment", "StatefulSet")]


def test_selectors_match_their_pod_labels():
    for d in workloads():
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert d["spec"]["selector"]["matchLabels"].items() <= labels.items(), d["metadata"]["name"]
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in workloads()}
    for svc in (d for d in manifests() if d["kind"] == "Service"):
        assert any(svc["spec"]["selector"].items() <= labels.items() for labels in pods.values()), \
            f"Service {svc['metadata']['name']} selects no pod"


def test_every_container_command_is_real_code():
    for d in deployments():
        spec = d["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            argv = container["command"]
            if argv[0] == "gunicorn":
                config, app = gunicorn_app(argv)
                assert_real_factory(app)
                assert config == "python:receiver.gunicorn_conf"
            else:
                assert_graphhook_command(argv)


def test_web_port_service_and_ingress_line_up():
    web = main_container(find("Deployment", "graphhook-web"))
    port = {p["name"]: p["containerPort"] for p in web["ports"]}["http"]
    assert f"--bind=0.0.0.0:{port}" in web["command"]
    service = find("Service", "graphhook-web")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    backend = find("Ingress", "graphhook-web")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "graphhook-web", "port": {"name": service["spec"]["ports"][0]["name"]}}
    host = find("Ingress", "graphhook-web")["spec"]["rules"][0]["host"]
    assert find("ConfigMap", "graphhook-env")["data"]["PUBLIC_URL"] == f"https://{host}"


def test_probes_are_real_get_routes_of_the_receiver(url_map):
    web = main_container(find("Deployment", "graphhook-web"))
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        path = web[probe]["httpGet"]["path"]
        assert "GET" in url_map[path], f"{probe} {path} is not a GET route"
        assert web[probe]["httpGet"]["port"] in {p["name"] for p in web["ports"]}


def test_worker_grace_period_outlasts_the_rq_job_timeout():
    job_timeout = Queue.DEFAULT_TIMEOUT  # jobs are enqueued without a timeout of their own
    worker = find("Deployment", "graphhook-worker")
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > job_timeout
    assert main_container(worker)["command"] == ["graphhook", "worker"]


def test_renewer_is_a_single_replica_never_overlapping():
    renewer = find("Deployment", "graphhook-renewer")
    assert renewer["spec"]["replicas"] == 1
    assert renewer["spec"]["strategy"]["type"] == "Recreate"
    assert main_container(renewer)["command"] == ["graphhook", "renewer"]


def test_keda_scales_the_worker_on_rqs_own_queue_list(redis_client):
    from graphhook.core.settings import Settings

    scaled = find("ScaledObject", "graphhook-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "graphhook-worker"
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis"}
    queue_name = find("ConfigMap", "graphhook-env")["data"]["GRAPHHOOK_QUEUE"]
    served = Settings(queue_name=queue_name).queues  # what `graphhook worker` takes jobs from
    assert sorted(t["metadata"]["listName"] for t in triggers) == sorted(f"rq:queue:{name}" for name in served)
    for trigger, name in ((t, t["metadata"]["listName"].removeprefix("rq:queue:")) for t in triggers):
        # The list KEDA reads really is where enqueued jobs wait.
        jobformat.queue(name, redis_client).enqueue("tests.deploy.jobs.slow_job", "redis://unused", "k", 0)
        assert redis_client.llen(trigger["metadata"]["listName"]) == 1
    trigger = triggers[0]
    # KEDA's address is the Redis Service, and the password comes from the same Secret key Redis uses.
    host, port = trigger["metadata"]["address"].rsplit(":", 1)
    assert host.split(".")[0] == "graphhook-redis" and int(port) == 6379
    auth = find("TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["spec"]["secretTargetRef"][0] == {"parameter": "password", "name": "graphhook-secrets",
                                                  "key": "REDIS_PASSWORD"}
    assert "REDIS_PASSWORD" in find("Secret", "graphhook-secrets")["stringData"]


def test_env_references_exist_and_are_documented():
    configmap = find("ConfigMap", "graphhook-env")["data"]
    secret = find("Secret", "graphhook-secrets")["stringData"]
    documented = documented_variables()
    assert set(configmap) <= documented, set(configmap) - documented
    assert set(secret) - NON_SETTINGS <= documented, set(secret) - NON_SETTINGS - documented
    for d in deployments():
        for container in d["spec"]["template"]["spec"]["containers"]:
            refs = {next(iter(e.values()))["name"] for e in container["envFrom"]}
            assert refs == {"graphhook-env", "graphhook-secrets"}


def test_configmap_configuration_file_is_valid_and_mounted_where_settings_say(tmp_path):
    configmap = find("ConfigMap", "graphhook-config")["data"]
    path = tmp_path / "graphhook.yaml"
    path.write_text(configmap["graphhook.yaml"])
    validate_config(path, env={})
    expected = find("ConfigMap", "graphhook-env")["data"]["GRAPHHOOK_CONFIG"]
    for d in deployments():
        mounts = main_container(d)["volumeMounts"]
        config_mount = [m for m in mounts if m["name"] == "config"][0]
        assert f"{config_mount['mountPath']}/graphhook.yaml" == expected


# --- compose, systemd, Dockerfile -----------------------------------------------------------

def test_compose_services_run_real_commands_with_enough_grace():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"redis", "check", "web", "worker", "renewer"} <= set(services)
    for name in ("check", "worker", "renewer"):
        assert_graphhook_command(services[name]["command"])
    assert services["check"]["command"][1:] == ["check", "--config-only"]
    grace = int(services["worker"]["stop_grace_period"].rstrip("s"))
    assert grace > Queue.DEFAULT_TIMEOUT
    assert services["web"]["ports"][0] == "${GRAPHHOOK_WEB_PUBLISH:-127.0.0.1:8000}:8000"  # loopback by default
    assert "noeviction" in services["redis"]["command"]
    assert (ROOT / "deploy" / services["web"]["build"]["context"] / services["web"]["build"]["dockerfile"]).exists()


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read(SYSTEMD / name)
    return parser


def test_systemd_units_run_real_commands():
    web = shlex.split(unit("graphhook-web.service")["Service"]["ExecStart"])
    assert Path(web[0]).name == "gunicorn"
    assert_real_factory(gunicorn_app(web)[1])
    for name in ("graphhook-worker@.service", "graphhook-renewer.service"):
        argv = shlex.split(unit(name)["Service"]["ExecStart"])
        assert_graphhook_command([Path(argv[0]).name, *argv[1:]])
    for name in ("graphhook-web.service", "graphhook-worker@.service", "graphhook-renewer.service"):
        pre = shlex.split(unit(name)["Service"]["ExecStartPre"])
        assert pre[1:] == ["check", "--config-only"]


def test_systemd_worker_stops_warmly():
    service = unit("graphhook-worker@.service")["Service"]
    # control-group (the default) would SIGTERM the forked job process too, killing the job.
    assert service["KillMode"] == "mixed"
    assert int(service["TimeoutStopSec"]) > Queue.DEFAULT_TIMEOUT


def test_systemd_target_wants_every_unit():
    wants = unit("graphhook.target")["Unit"]["Wants"].split()
    assert {"graphhook-web.service", "graphhook-renewer.service"} <= set(wants)
    assert any(w.startswith("graphhook-worker@") for w in wants)


def test_dockerfile_installs_every_package_and_runs_unprivileged():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, flags=re.M)
    assert re.search(r"pip install -c constraints\.txt \.$", text, flags=re.M)
    user = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert user and user[-1] not in ("root", "0")
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    packages = {p.strip() for p in setup["options.packages.find"]["include"].split() if "*" not in p}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", text, flags=re.M))
    assert packages == copied, f"packages not copied into the image: {packages - copied}"
    cmd = re.search(r"^CMD (.+)$", text, flags=re.M).group(1)
    _, app = gunicorn_app(shlex.split(yaml.safe_load(cmd)[-1].replace("exec ", "", 1)))
    assert_real_factory(app)
    starter = re.search(r"^COPY (\S+) /etc/graphhook/graphhook.yaml", text, flags=re.M).group(1)
    validate_config(ROOT / starter, env={})


def installed_copies(tmp_path: Path) -> list[str]:
    """The units (they point at /opt/graphhook) copied to ``tmp_path`` pointing at this checkout's virtualenv and an
    empty environment file, as systemd-analyze reads them; their file names."""
    bin_dir = str(Path(sys.executable).parent)
    (tmp_path / "graphhook.env").write_text("")
    names = []
    for source in SYSTEMD.iterdir():
        text = source.read_text().replace("/opt/graphhook/venv/bin", bin_dir)
        text = text.replace("/etc/graphhook/graphhook.env", str(tmp_path / "graphhook.env"))
        name = source.name.replace("@.service", "@1.service")
        (tmp_path / name).write_text(text)
        names.append(name)
    return names


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verifies_the_units(tmp_path):
    names = [f"./{name}" for name in installed_copies(tmp_path)]
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if "graphhook" in line]
    assert proc.returncode == 0 and not problems, proc.stdout + proc.stderr
