"""The ``cli`` fixture: ``graphhook`` run in this process as a responder runs it, against the real emulator over
HTTPS and a real Redis; returns (exit code, stdout, stderr)."""

from __future__ import annotations

import pytest

from graphhook.cli import main
from workers.response import mailops

ALICE, BOB, SECOPS = "alice@contoso.com", "bob@contoso.com", "secops@contoso.com"


@pytest.fixture
def cli_env(emulator, redis_server, redis_client, monkeypatch, tmp_path):
    """The emulator's environment, Redis, an empty configuration file, and three mailboxes."""
    config = tmp_path / "graphhook.yaml"
    config.write_text("mailboxes: []\n")
    values = {**emulator.environment(), "REDIS_URL": redis_server.url, "GRAPHHOOK_CONFIG": str(config)}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for address in (ALICE, BOB, SECOPS):
        emulator.add_user(address)
    mailops.forget_folders()
    yield values
    mailops.forget_folders()


@pytest.fixture
def cli(cli_env, capsys):
    """Run ``graphhook ARGV…``; returns (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run
