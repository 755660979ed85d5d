"""``graphhook emulator`` standalone: prints its URL and CA path and serves seeded, realistic mail."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def test_standalone_emulator_serves_the_seeded_phishing_sample(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "graphhook", "emulator", "--port", "0", "--workdir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("REQUESTS_CA_BUNDLE" in line for line in lines):
            lines.append(proc.stdout.readline())
        text = "".join(lines)
        url = re.search(r"listening on (https://\S+)", text).group(1)
        ca = re.search(r"CA certificate: (\S+)", text).group(1)
        env_vars = dict(re.findall(r"export (\w+)=(\S+)", text))
        assert Path(ca).is_file() and env_vars["GRAPH_URL"] == f"{url}/v1.0"
        token = requests.post(f"{url}/{env_vars['AZURE_TENANT_ID']}/oauth2/v2.0/token", verify=ca, data={
            "client_id": env_vars["AZURE_CLIENT_ID"], "client_secret": env_vars["AZURE_CLIENT_SECRET"],
            "grant_type": "client_credentials", "scope": "https://graph.microsoft.com/.default"}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        users = requests.get(f"{url}/v1.0/users", headers=headers, verify=ca).json()["value"]
        assert len(users) >= 3
        found = requests.get(f"{url}/v1.0/users/alice@contoso.com/messages?$search=\"subject:storage\"",
                             headers=headers, verify=ca).json()["value"]
        (phish,) = found
        full = requests.get(f"{url}/v1.0/users/alice@contoso.com/messages/{phish['id']}"
                            "?$select=internetMessageHeaders,body&$expand=attachments",
                            headers=headers, verify=ca).json()
        auth = next(h["value"] for h in full["internetMessageHeaders"] if h["name"] == "Authentication-Results")
        assert "spf=fail" in auth and "dkim=fail" in auth and "dmarc=fail" in auth
        assert [a["contentType"] for a in full["attachments"]] == ["text/html"]
        assert full["body"]["contentType"] == "html"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
