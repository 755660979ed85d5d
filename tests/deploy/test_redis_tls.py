"""Heroku Redis speaks TLS with a self-signed certificate: ``rediss://`` against a real TLS redis-server.

REDIS_SSL_CERT_REQS=none must connect (that is Heroku's setting); ``required`` must refuse the
self-signed certificate, and ``graphhook check`` must say how to fix that. A private CA is verified
with REDIS_SSL_CA_CERTS, so ``none`` is never the only way: that CA connects with ``required``,
another CA is refused.
"""

from __future__ import annotations

import subprocess
import time

import pytest
import redis

from graphhook.commands.check import run_checks
from graphhook.core import jobformat
from graphhook.core.redisconn import connect
from graphhook.core.settings import Settings
from graphhook.redis_server import find_redis_server, free_port
from receiver.app import create_app
from tests.deploy.certs import self_signed

tls_redis_ca: dict[str, str] = {}  # port → the PEM that signs that server's certificate (self-signed: itself)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    """A redis-server listening only on a TLS loopback port with a self-signed certificate."""
    directory = tmp_path_factory.mktemp("redis-tls")
    cert, key = self_signed(directory, "redis")
    port = free_port()
    binary = find_redis_server()
    proc = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
         "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = redis.Redis(port=port, ssl=True, ssl_cert_reqs="none", socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            if "tls" in output.lower() or "Bad directive" in output:
                pytest.skip(f"{binary} was built without TLS support: {output.strip().splitlines()[-1]}")
            raise RuntimeError(f"redis-server exited: {output}")
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    tls_redis_ca[str(port)] = str(cert)
    yield f"rediss://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


def settings_for(url: str, cert_reqs: str, ca_certs: str = "") -> Settings:
    return Settings.from_env({"REDIS_URL": url, "REDIS_SSL_CERT_REQS": cert_reqs, "REDIS_SSL_CA_CERTS": ca_certs})


def ca_of(url: str) -> str:
    return tls_redis_ca[url.rsplit(":", 1)[1].split("/")[0]]


def test_cert_reqs_none_connects_and_queues_jobs(tls_redis):
    r = connect(settings_for(tls_redis, "none"))
    assert r.ping() is True
    queue = jobformat.queue("graphhook", r)
    queue.enqueue("tests.deploy.jobs.slow_job", tls_redis, "tls", 0)
    assert r.llen("rq:queue:graphhook") == 1
    r.flushdb()


def test_cert_reqs_required_refuses_a_self_signed_certificate(tls_redis):
    r = connect(settings_for(tls_redis, "required"))
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        r.ping()


def test_private_ca_is_verified_with_redis_ssl_ca_certs(tls_redis):
    r = connect(settings_for(tls_redis, "required", ca_of(tls_redis)))
    assert r.ping() is True
    r.close()


def test_another_ca_is_refused_even_with_redis_ssl_ca_certs(tls_redis, tmp_path):
    other, _ = self_signed(tmp_path, "other")
    r = connect(settings_for(tls_redis, "required", str(other)))
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        r.ping()


def test_receiver_is_ready_over_tls_with_heroku_settings(tls_redis):
    settings = settings_for(tls_redis, "none").replace(client_id="11111111-2222-3333-4444-555555555555")
    app = create_app(settings)
    reply = app.test_client().get("/readyz")
    assert reply.status_code == 200, reply.text


def test_check_explains_the_self_signed_certificate(tls_redis):
    env = {"REDIS_URL": tls_redis}
    refused = [r for r in run_checks({**env, "REDIS_SSL_CERT_REQS": "required"},
                                     skip=["config", "token", "public-url"]).results if r.name == "redis"][0]
    assert refused.status == "fail" and "not trusted" in refused.detail
    assert "REDIS_SSL_CA_CERTS" in refused.fix and "REDIS_SSL_CERT_REQS=none" in refused.fix

    report = run_checks({**env, "REDIS_SSL_CERT_REQS": "none"}, skip=["config", "token", "public-url"])
    assert not report.failed, report.render()
    assert "over TLS" in [r for r in report.results if r.name == "redis"][0].detail


def test_worker_process_runs_jobs_over_tls(tls_redis, emulator, tmp_path):
    """The whole worker (RQ's main loop, its scheduler and pubsub connections) over rediss:// with cert none."""
    import os
    import sys

    from tests.conftest import ROOT

    r = connect(settings_for(tls_redis, "none"))
    r.flushdb()
    job = jobformat.queue("graphhook", r).enqueue("tests.deploy.jobs.echo", "over tls")
    env = {**os.environ, **emulator.environment(), "REDIS_URL": tls_redis, "REDIS_SSL_CERT_REQS": "none",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "graphhook", "worker", "--burst"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    job.refresh()
    assert job.get_status() == "finished", proc.stderr[-2000:]
    assert job.return_value() == "over tls"
