"""The Kubernetes manifests as a platform team reviews them: the restricted Pod Security Standard for every
container (init containers included), disruption budgets, Redis on a persistent volume, probes that run
real ``graphhook probe`` commands, a NetworkPolicy, and ``kubernetes-validate --strict``.

The restricted profile is https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted;
:func:`restricted_violations` checks its controls (and ours: read-only root, resources) and is itself shown
to catch a violation.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.deploy.test_manifests import K8S, find, main_container, manifests
from tests.deploy.test_procfile import assert_graphhook_command

SAFE_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
                "secret"}


def tool(name: str) -> str | None:
    """A command of this virtualenv (dev extra) or of PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def workloads() -> list[dict]:
    return [d for d in manifests() if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")]


def containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod["containers"] + pod.get("ephemeralContainers", [])


def restricted_violations(pod: dict) -> list[str]:
    """What in this pod spec breaks the restricted Pod Security Standard, or our own rules (empty: nothing)."""
    problems = []
    pod_sc = pod.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append(f"pod: {field}")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= SAFE_VOLUMES:
            problems.append(f"volume {volume['name']}: {kinds - SAFE_VOLUMES}")
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod: runAsUser 0")
    for c in containers(pod):
        name, sc = c["name"], c.get("securityContext", {})
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile {seccomp!r}")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{name}: capabilities.drop must include ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities.add {caps['add']}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            problems.append(f"{name}: hostPort")
        # Ours, beyond the standard: an immutable root and bounded resources.
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem")
        resources = c.get("resources", {})
        if not {"cpu", "memory"} <= set(resources.get("requests", {})) or "memory" not in resources.get("limits", {}):
            problems.append(f"{name}: resources (cpu and memory requests, a memory limit)")
    return problems


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def test_every_container_of_every_manifest_meets_the_restricted_standard():
    found = workloads()
    assert {w["metadata"]["name"] for w in found} >= {"graphhook-web", "graphhook-worker", "graphhook-renewer",
                                                      "graphhook-redis"}
    for workload in found:
        assert restricted_violations(pod_spec(workload)) == [], workload["metadata"]["name"]
        assert pod_spec(workload)["automountServiceAccountToken"] is False, workload["metadata"]["name"]


@pytest.mark.parametrize("breakage", [
    lambda c: c["securityContext"].pop("seccompProfile"),
    lambda c: c["securityContext"]["capabilities"].update(drop=[]),
    lambda c: c["securityContext"].update(allowPrivilegeEscalation=True),
    lambda c: c["securityContext"].update(readOnlyRootFilesystem=False),
    lambda c: c.pop("resources"),
])
def test_the_check_catches_a_broken_init_container(breakage):
    pod = copy.deepcopy(pod_spec(find("Deployment", "graphhook-worker")))
    pod.pop("securityContext")  # so the container's own fields are what counts
    breakage(pod["initContainers"][0])
    assert any(p.startswith("check-config:") for p in restricted_violations(pod))


def dockerfile_user_and_home() -> tuple[int, str]:
    text = (ROOT / "Dockerfile").read_text()
    user = int(re.findall(r"^USER (\d+)", text, flags=re.M)[-1])
    home = re.search(r"\bHOME=(\S+)", text).group(1)
    return user, home


def test_graphhook_pods_run_as_the_images_user_with_writable_tmp_and_home():
    uid, home = dockerfile_user_and_home()
    for name in ("graphhook-web", "graphhook-worker", "graphhook-renewer"):
        pod = pod_spec(find("Deployment", name))
        assert pod["securityContext"]["runAsUser"] == uid
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in containers(pod):
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}/{c['name']}: /tmp must be a writable emptyDir"
    # gunicorn 27 opens its control socket in $HOME/.gunicorn: the image's HOME must be writable in the web pod.
    web = main_container(find("Deployment", "graphhook-web"))
    assert home in {m["mountPath"] for m in web["volumeMounts"]}


def test_disruption_budgets_cover_web_and_workers():
    for name in ("graphhook-web", "graphhook-worker"):
        budget = find("PodDisruptionBudget", name)
        pods = find("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= pods.items()
    web = find("PodDisruptionBudget", "graphhook-web")["spec"]
    assert 1 <= web["minAvailable"] < find("Deployment", "graphhook-web")["spec"]["replicas"]
    assert find("PodDisruptionBudget", "graphhook-worker")["spec"]["maxUnavailable"] == 1


def test_redis_keeps_its_append_only_file_on_a_persistent_volume():
    redis = find("StatefulSet", "graphhook-redis")
    container = main_container(redis)
    args = container["args"]
    option = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}
    assert option["--appendonly"] == "yes" and option["--appendfsync"] == "always"
    assert option["--maxmemory-policy"] == "noeviction"
    data_mount = next(m for m in container["volumeMounts"] if m["mountPath"] == option["--dir"])
    claims = {c["metadata"]["name"] for c in redis["spec"]["volumeClaimTemplates"]}
    assert data_mount["name"] in claims
    assert data_mount["name"] not in {v["name"] for v in pod_spec(redis).get("volumes", [])}  # no emptyDir shadow
    assert redis["spec"]["serviceName"] == "graphhook-redis" and redis["spec"]["replicas"] == 1


def test_workers_and_renewer_probe_with_real_graphhook_commands():
    for name, kind in (("graphhook-worker", "worker"), ("graphhook-renewer", "renewer")):
        container = main_container(find("Deployment", name))
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            argv = container[probe]["exec"]["command"]
            assert argv == ["graphhook", "probe", kind], (name, probe)
            assert_graphhook_command(argv)
            assert container[probe]["timeoutSeconds"] >= 5


def policies() -> list[dict]:
    return [d for d in manifests() if d["kind"] == "NetworkPolicy"]


def selects(policy: dict, labels: dict) -> bool:
    selector = policy["spec"]["podSelector"]
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def test_network_policy_default_denies_and_lets_web_alone_take_ingress():
    deny = find("NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    pods = {w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w in workloads()}
    for name, labels in pods.items():
        own = [p for p in policies() if p["spec"]["podSelector"] and selects(p, labels)]
        assert own, f"no NetworkPolicy selects {name}"
        ingress = [rule for p in own for rule in p["spec"].get("ingress", [])]
        egress_ports = {port["port"] for p in own for rule in p["spec"].get("egress", []) for port in rule["ports"]}
        if name in ("graphhook-worker", "graphhook-renewer"):
            assert ingress == [], name
            assert egress_ports == {6379, 53, 443}, name
        if name == "graphhook-redis":
            assert egress_ports == set()
    web_ports = {p["name"] for p in main_container(find("Deployment", "graphhook-web"))["ports"]}
    web_rules = find("NetworkPolicy", "graphhook-web")["spec"]["ingress"]
    assert {port["port"] for rule in web_rules for port in rule["ports"]} == web_ports
    # The metrics port is reachable from pods of the cluster only, never from everywhere.
    metrics_rule = next(r for r in web_rules if r["ports"][0]["port"] == "metrics")
    assert metrics_rule["from"] == [{"namespaceSelector": {}}]


def test_redis_egress_rule_points_at_the_redis_pods_and_port():
    redis_labels = find("StatefulSet", "graphhook-redis")["spec"]["template"]["metadata"]["labels"]
    redis_port = main_container(find("StatefulSet", "graphhook-redis"))["ports"][0]["containerPort"]
    for name in ("graphhook-web", "graphhook-worker-renewer"):
        rules = find("NetworkPolicy", name)["spec"]["egress"]
        to_redis = [r for r in rules if any("podSelector" in t and "namespaceSelector" not in t for t in r["to"])]
        assert len(to_redis) == 1
        assert to_redis[0]["to"][0]["podSelector"]["matchLabels"].items() <= redis_labels.items()
        assert to_redis[0]["ports"] == [{"protocol": "TCP", "port": redis_port}]


@pytest.mark.skipif(tool("kubernetes-validate") is None, reason="kubernetes-validate (dev extra) is missing")
def test_kubernetes_validate_strict_passes_every_builtin_object():
    files = sorted(str(p) for p in K8S.glob("*.yaml"))
    proc = subprocess.run([tool("kubernetes-validate"), "--strict", *files], capture_output=True, text=True,
                          timeout=300)
    output = proc.stdout + proc.stderr
    # KEDA's kinds have no schema there (a warning); everything else must pass.
    unexpected = [line for line in output.splitlines()
                  if not line.startswith("INFO") and "keda.sh" not in line]
    assert proc.returncode == 0 and not unexpected, output
    passed = len(re.findall(r"^INFO .* passed", output, flags=re.M))
    assert passed == len([d for d in manifests() if not d["apiVersion"].startswith("keda.sh")])
