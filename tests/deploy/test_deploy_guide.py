"""deploy/README.md's advice agrees with Heroku's rules and with the deploy files it describes."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.conftest import ROOT
from tests.deploy.test_manifests import find, unit

GUIDE = ROOT / "deploy" / "README.md"
# Heroku: Eco and Basic dynos run one dyno per process type; these sizes scale horizontally.
HORIZONTAL = re.compile(r"^(standard-[12]x|performance-[a-z0-9]+|private-[a-z0-9]+|shield-[a-z0-9]+)$", re.I)


def markdown_outside_the_root_readme() -> list:
    return [GUIDE, *sorted((ROOT / "docs").glob("*.md"))]


def test_every_deploy_button_outside_the_root_readme_names_its_template():
    buttons = 0
    for doc in markdown_outside_the_root_readme():
        for url in re.findall(r"\((https?://(?:www\.)?heroku\.com/deploy[^)\s]*)\)", doc.read_text()):
            buttons += 1
            template = parse_qs(urlsplit(url).query).get("template", [""])[0]
            assert template.startswith("https://github.com/"), f"{doc.name}: {url} lacks ?template="
    assert buttons >= 1


def test_scaling_advice_never_asks_basic_dynos_for_more_than_one():
    commands = re.findall(r"heroku ps:scale ([^\n`#]+)", GUIDE.read_text())
    assert commands
    for command in commands:
        for name, quantity, size in re.findall(r"(\w+)=(\d+)(?::([\w-]+))?", command):
            if int(quantity) > 1:
                assert size and HORIZONTAL.match(size), f"`heroku ps:scale {command.strip()}` fails on basic dynos"


def grace_table() -> dict[str, str]:
    section = GUIDE.read_text().split("## Stopping workers", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (Heroku|Kubernetes|systemd|compose) \| ([^|]+) \|", section, flags=re.M)
    return dict(rows)


def test_stopping_workers_table_matches_the_deploy_files():
    table = grace_table()
    assert set(table) == {"Heroku", "Kubernetes", "systemd", "compose"}
    k8s = find("Deployment", "graphhook-worker")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert f"terminationGracePeriodSeconds: {k8s}" in table["Kubernetes"]
    systemd = unit("graphhook-worker@.service")["Service"]["TimeoutStopSec"]
    assert f"TimeoutStopSec={systemd}" in table["systemd"]
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]["worker"]
    assert f"stop_grace_period: {compose['stop_grace_period']}" in table["compose"]
    assert "30 s" in table["Heroku"]
    # The warm shutdown's budget (default 25 s) fits every grace period with a margin.
    default = int(re.search(r"GRAPHHOOK_WORKER_SHUTDOWN_SECONDS` \(default (\d+) s\)", GUIDE.read_text()).group(1))
    for grace in (30, k8s, int(systemd), int(compose["stop_grace_period"].rstrip("s"))):
        assert grace >= default + 5
