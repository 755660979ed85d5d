"""The ``cli`` fixture: ``graphhook`` run in this process as a responder runs it, against the real emulator over
HTTPS and a real Redis; returns (exit code, stdout, stderr)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

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


def on_terminal(argv: list[str], env: dict[str, str], *, stderr_too: bool = False) -> tuple[int, str]:
    """Run ``graphhook ARGV…`` with stdout (and with ``stderr_too`` stderr) on a real pseudo-terminal, as a
    responder does; returns (exit code, what the terminal showed)."""
    from tests.conftest import ROOT

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "graphhook", *argv],
                            env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=follower, stderr=follower if stderr_too else subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=120), b"".join(chunks).decode().replace("\r\n", "\n")
