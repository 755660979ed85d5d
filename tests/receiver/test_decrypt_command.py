"""``graphhook decrypt`` as an operator runs it: Microsoft's test vector in, the resource JSON out."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pty
import select
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.conftest import ROOT

VECTOR = ROOT / "tests" / "samples" / "ms-sdk-encrypted-content.json"


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graphhook", "decrypt", *args], input=stdin,
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.fixture(scope="module")
def p12(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "rich.pfx"
    path.write_bytes(base64.b64decode(json.loads(VECTOR.read_text())["pkcs12_base64"]))
    return path


def test_reproduces_microsofts_test_vector(p12):
    result = _run("--key", str(p12), "--password", "rich", str(VECTOR))
    assert result.returncode == 0, result.stderr
    resource = json.loads(result.stdout)
    expected = json.loads(VECTOR.read_text())["expected"]
    assert {k: resource[k] for k in expected} == expected


def test_reads_a_collection_from_stdin(p12):
    content = json.loads(VECTOR.read_text())["encryptedContent"]
    result = _run("--key", str(p12), "--password", "rich", "-", stdin=json.dumps({"value": [{"encryptedContent": content}]}))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["body"]["content"] == "Hello World"


def test_bad_signature_fails_clearly(p12, tmp_path):
    content = json.loads(VECTOR.read_text())["encryptedContent"]
    content["dataSignature"] = base64.b64encode(b"\0" * 32).decode()
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(content))
    result = _run("--key", str(p12), "--password", "rich", str(path))
    assert result.returncode == 1
    assert "dataSignature does not match" in result.stderr
    assert result.stdout == ""


def test_wrong_key_fails_clearly(tmp_path):
    from .conftest import make_key_pair

    other, _cert = make_key_pair(tmp_path)
    result = _run("--key", str(other), str(VECTOR))
    assert result.returncode == 1
    assert "wrong key" in result.stderr


def _run_env(*args: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GRAPHHOOK_DECRYPT_PASSWORD"}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "graphhook", "decrypt", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env=env, stdin=subprocess.DEVNULL)


def test_password_from_the_environment_keeps_it_off_the_command_line(p12):
    result = _run_env("--key", str(p12), str(VECTOR), env_extra={"GRAPHHOOK_DECRYPT_PASSWORD": "rich"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["body"]["content"] == "Hello World"
    assert "warning" not in result.stderr


def test_password_on_the_command_line_still_works_but_warns(p12):
    result = _run_env("--key", str(p12), "--password", "rich", str(VECTOR), env_extra={})
    assert result.returncode == 0, result.stderr
    assert "--password is visible to other users" in result.stderr
    assert "GRAPHHOOK_DECRYPT_PASSWORD" in result.stderr


def test_without_a_password_or_terminal_an_encrypted_key_fails_without_prompting(p12):
    result = _run_env("--key", str(p12), str(VECTOR), env_extra={})
    assert result.returncode != 0
    assert "wrong password" in result.stderr and "password of" not in result.stderr


def test_on_a_terminal_the_password_is_prompted_for_without_echo(p12):
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "GRAPHHOOK_DECRYPT_PASSWORD"}
    proc = subprocess.Popen([sys.executable, "-m", "graphhook", "decrypt", "--key", str(p12), str(VECTOR)],
                            stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env, start_new_session=True,
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))  # the pty is its terminal
    os.close(slave)
    try:
        screen = _read_until(master, b"password of")
        os.write(master, b"rich\n")
        screen += _read_until(master, b"Hello World")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    typed = screen.split(b"rich.pfx: ", 1)[1]
    assert not typed.lstrip().startswith(b"rich")  # the password was not echoed
    assert b"Hello World" in screen


def _read_until(fd: int, wanted: bytes) -> bytes:
    """What the terminal shows, until ``wanted`` appears (or the child closes it)."""
    seen = b""
    while wanted not in seen:
        ready, _, _ = select.select([fd], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    return seen
