"""``graphhook decrypt`` as an operator runs it: Microsoft's test vector in, the resource JSON out."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
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
