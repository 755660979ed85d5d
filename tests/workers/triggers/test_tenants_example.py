"""The commented ``tenants:`` example in graphhook.example.yaml is a valid configuration once uncommented as it
says (top-level ``mailboxes:`` deleted), for the parser and for ``graphhook check --config-only``."""

from __future__ import annotations

import json
import re

from graphhook.cli import main
from tests.conftest import ROOT
from workers.triggers.config import validate_config

SECRETS = {"SOAR_WEBHOOK_SECRET": "s" * 32, "NORTHWIND_CLIENT_SECRET": "northwind-secret-value"}


def uncommented_example() -> str:
    """graphhook.example.yaml as its tenants comment says to edit it."""
    text = (ROOT / "graphhook.example.yaml").read_text()
    block = re.search(r"^# --- tenants example ---\n(.*?)^# --- end of tenants example ---\n", text, re.M | re.S)
    assert block, "graphhook.example.yaml lost its tenants example markers"
    yaml_lines = block.group(1).splitlines()
    assert all(line.startswith("# ") for line in yaml_lines)
    without_mailboxes = re.sub(r"^mailboxes:\n(?:  .*\n)+", "", text, count=1, flags=re.M)
    assert without_mailboxes != text
    return without_mailboxes + "\n".join(line[2:] for line in yaml_lines) + "\n"


def test_the_tenants_example_parses_into_two_tenants(tmp_path):
    path = tmp_path / "graphhook.yaml"
    path.write_text(uncommented_example())

    config = validate_config(str(path), SECRETS)

    contoso, northwind = config.tenants
    assert config.mailboxes == ()
    assert contoso.name == "contoso" and contoso.app is None and contoso.rules is None
    assert [w.address for w in contoso.mailboxes] == ["alice@contoso.com", "secops@contoso.com"]
    assert northwind.app.client_id == "6b7c8d9e-0f1a-4b2c-8d3e-4f5a6b7c8d9e"
    assert northwind.app.secret == SECRETS["NORTHWIND_CLIENT_SECRET"]
    assert northwind.rules == ("quarantine-phishing", "known-bad-attachment") and northwind.webhooks == ("soar",)


def test_check_config_only_accepts_it(tmp_path, monkeypatch, capsys):
    path = tmp_path / "graphhook.yaml"
    path.write_text(uncommented_example())
    monkeypatch.setenv("GRAPHHOOK_CONFIG", str(path))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)

    code = main(["check", "--config-only", "--json"])

    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] is True and SECRETS["NORTHWIND_CLIENT_SECRET"] not in out


def test_without_the_apps_secret_check_names_the_variable(tmp_path, monkeypatch, capsys):
    path = tmp_path / "graphhook.yaml"
    path.write_text(uncommented_example())
    monkeypatch.setenv("GRAPHHOOK_CONFIG", str(path))
    monkeypatch.setenv("SOAR_WEBHOOK_SECRET", SECRETS["SOAR_WEBHOOK_SECRET"])
    monkeypatch.delenv("NORTHWIND_CLIENT_SECRET", raising=False)

    code = main(["check", "--config-only", "--json"])

    out = capsys.readouterr().out
    assert code == 1 and "environment variable NORTHWIND_CLIENT_SECRET is unset" in out
