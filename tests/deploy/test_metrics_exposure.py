"""Every deployment serves Graph on the public port and metrics only where the internet cannot reach them,
and runs gunicorn with the worker class that holds against slow clients."""

from __future__ import annotations

import shlex

import yaml

from graphhook.core.settings import Settings
from receiver import gunicorn_conf
from tests.conftest import ROOT
from tests.deploy.test_manifests import find, main_container, manifests, unit
from tests.deploy.test_procfile import procfile


def test_the_private_listener_defaults_to_loopback():
    defaults = Settings()
    assert defaults.metrics_bind == "127.0.0.1" and defaults.metrics_port
    assert not defaults.metrics_subscription_detail


def test_kubernetes_scrapes_a_port_neither_the_service_nor_the_ingress_routes():
    deployment = find("Deployment", "graphhook-web")
    web = main_container(deployment)
    ports = {p["name"]: p["containerPort"] for p in web["ports"]}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == ports["metrics"] != ports["http"]
    env = {e["name"]: e["value"] for e in web["env"]}
    assert int(env["GRAPHHOOK_METRICS_PORT"]) == ports["metrics"]
    assert [p["targetPort"] for p in find("Service", "graphhook-web")["spec"]["ports"]] == ["http"]
    for ingress in (d for d in manifests() if d["kind"] == "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] == "graphhook-web"
    ingress = find("Ingress", "graphhook-web")["metadata"]["annotations"]
    assert ingress["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"


def test_compose_publishes_metrics_on_the_hosts_loopback_only():
    web = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]["web"]
    metrics = [p for p in web["ports"] if p.split(":")[-1] == "9108"]
    assert metrics == ["127.0.0.1:9108:9108"]


def test_systemd_keeps_metrics_on_loopback():
    lines = (ROOT / "deploy" / "systemd" / "graphhook-web.service").read_text().splitlines()
    assert "Environment=GRAPHHOOK_METRICS_BIND=127.0.0.1" in lines


def test_every_gunicorn_line_keeps_the_gevent_worker_of_gunicorn_conf():
    assert gunicorn_conf.worker_class == "gevent"
    lines = [shlex.split(procfile()["web"]), main_container(find("Deployment", "graphhook-web"))["command"],
             shlex.split(unit("graphhook-web.service")["Service"]["ExecStart"])]
    for argv in lines:
        assert not any(a.startswith(("--threads", "-k", "--worker-class")) for a in argv), argv
        assert "python:receiver.gunicorn_conf" in argv
