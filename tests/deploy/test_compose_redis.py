"""Compose's Redis asks for a password, and graphhook's REDIS_URL there carries it: a real redis-server with
compose's own command line refuses a client without it and serves graphhook's connection with it."""

from __future__ import annotations

import re
import secrets
import subprocess
import time

import pytest
import redis
import yaml

from graphhook.core.redisconn import connect
from graphhook.core.settings import Settings
from graphhook.redis_server import find_redis_server, free_port
from tests.conftest import ROOT

_VARIABLE = re.compile(r"\$\{REDIS_PASSWORD:\?[^}]*\}")


def compose() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())


def test_compose_redis_requires_the_password_every_process_uses():
    services = compose()["services"]
    command = services["redis"]["command"]
    assert _VARIABLE.fullmatch(command[command.index("--requirepass") + 1])  # required: compose stops when unset
    assert _VARIABLE.fullmatch(services["redis"]["environment"]["REDISCLI_AUTH"])
    assert "PONG" in " ".join(services["redis"]["healthcheck"]["test"])  # NOAUTH is not healthy
    for name in ("web", "worker", "renewer"):
        url = services[name]["environment"]["REDIS_URL"]
        assert _VARIABLE.sub("PASSWORD", url) == "redis://:PASSWORD@redis:6379/0", name


@pytest.fixture
def compose_redis(tmp_path):
    """redis-server started with compose's command line, its password substituted, on a loopback port."""
    password = secrets.token_hex(32)
    argv = [_VARIABLE.sub(password, arg) for arg in compose()["services"]["redis"]["command"]]
    port = free_port()
    proc = subprocess.Popen([find_redis_server(), *argv[1:], "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = redis.Redis(port=port, password=password, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        try:
            probe.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    probe.close()
    yield port, password
    proc.terminate()
    proc.wait(timeout=10)


def test_compose_redis_refuses_clients_without_the_password(compose_redis):
    port, password = compose_redis
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).set("rq:job:planted", "x")
    url = _VARIABLE.sub(password, compose()["x-graphhook"]["environment"]["REDIS_URL"])
    r = connect(Settings.from_env({"REDIS_URL": url.replace("@redis:6379", f"@127.0.0.1:{port}")}))
    assert r.ping() is True
    r.close()
