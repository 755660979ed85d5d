"""Fuzzing the receiver's endpoints: generated requests never get a 5xx (except 503 while Redis is down)
and nothing from invalid input is ever enqueued.

Requests are generated with hypothesis: plausible notification collections with fields spoiled,
arbitrary JSON, raw bytes, oversized and deeply nested bodies, odd content types, headers, query
strings (including the validation handshake), methods and paths, against every endpoint of the
receiver (``/notifications``, ``/lifecycle``, ``/healthz``, ``/readyz``, ``/metrics``, ``/status``).
The receiver is the real app on a real Redis; 1 request in 10 goes to a receiver whose Redis port
is closed.

How many: GRAPHHOOK_FUZZ_REQUESTS (default 2,000 inside ``make test``; ``make soak`` runs 100,000).
"""

from __future__ import annotations

import json
import os
import string

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from graphhook.core import jobformat
from graphhook.core.notifications import Collection
from graphhook.core.settings import Settings
from graphhook.redis_server import free_port
from receiver.app import create_app
from tests.receiver.conftest import register
from tests.receiver.test_properties import TENANT, _ours, body, content_type, extra_headers, query, valid_item

REQUESTS = int(os.environ.get("GRAPHHOOK_FUZZ_REQUESTS", "2000"))
DOWN_SHARE = 0.1  # of the requests go to a receiver whose Redis is down
MAX_BODY = 8192

pytestmark = pytest.mark.timeout(max(300, REQUESTS // 40))

INTAKE = ("/notifications", "/lifecycle")
OTHER = ("/healthz", "/readyz", "/metrics", "/status", "/", "/notifications/", "/lifecycle/x")
methods = st.sampled_from(["POST"] * 8 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
paths = st.one_of(st.sampled_from(INTAKE), st.sampled_from(INTAKE), st.sampled_from(INTAKE), st.sampled_from(OTHER),
                  st.text(alphabet=string.ascii_letters + string.digits + "/._-%", max_size=30).map(lambda p: "/" + p))
# Bodies the shared property test does not make: too large, deeply nested, truncated, not UTF-8.
nasty_body = st.one_of(
    st.integers(MAX_BODY - 8, MAX_BODY + 64).map(lambda n: b'{"value":[' + b"1," * (n // 2) + b"1]}"),
    st.integers(1, 20_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 3000).map(lambda depth: b'{"value":' * depth + b"[]" + b"}" * depth),
    body.map(lambda b: b[: len(b) // 2]),
    st.binary(min_size=1, max_size=64).map(lambda b: b'{"value":[{"subscriptionId":"' + b + b'"}]}'),
)
# Collections of our own notifications (some spoiled by valid_item): the accepting path.
ours_body = st.lists(valid_item, min_size=1, max_size=5).map(lambda items: json.dumps({"value": items}).encode())
bodies = st.one_of(body, body, body, nasty_body, ours_body)
wild_request = st.fixed_dictionaries({
    "method": methods, "path": paths, "data": bodies, "ctype": content_type,
    "params": st.just({}) | query, "headers": st.just({}) | extra_headers,
})
# As Graph would send it, with a body that may or may not be right: reaches the checks behind the parser.
graph_request = st.fixed_dictionaries({
    "method": st.just("POST"), "path": st.sampled_from(INTAKE), "data": st.one_of(body, ours_body, ours_body),
    "ctype": st.sampled_from(["application/json", "application/json; charset=utf-8"]),
    "params": st.just({}), "headers": st.just({}),
})
request = st.one_of(wild_request, graph_request)


def _settings(count: int) -> hsettings:
    return hsettings(max_examples=count, deadline=None, database=None, phases=[Phase.generate, Phase.shrink],
                     suppress_health_check=list(HealthCheck))


def _send(app, req: dict) -> tuple[int, bytes]:
    headers = {k: v for k, v in req["headers"].items() if k != "Transfer-Encoding" or v == "chunked"}
    if req["ctype"]:
        headers["Content-Type"] = req["ctype"]
    # An absolute URL: werkzeug's test client would read a path such as "//." as a host name.
    response = app.test_client().open("http://localhost" + req["path"], method=req["method"], data=req["data"],
                                      query_string=req["params"], headers=headers)
    return response.status_code, response.get_data()


def _ours_ids(data: bytes) -> set[str]:
    """Ids of the notifications in ``data`` that the receiver may enqueue (ours, with an id)."""
    try:
        sent = json.loads(data)
    except ValueError:
        return set()
    if not (isinstance(sent, dict) and isinstance(sent.get("value"), list)):
        return set()
    return {raw["id"] for raw in sent["value"] if _ours(raw) and isinstance(raw.get("id"), str)}


@pytest.fixture
def fuzz_settings(emulator, redis_server):
    return Settings.from_env({**emulator.environment(), "REDIS_URL": redis_server.url, "PUBLIC_URL": "https://127.0.0.1",
                              "AZURE_TENANT_ID": TENANT, "GRAPHHOOK_MAX_BODY_BYTES": str(MAX_BODY),
                              "GRAPHHOOK_OPENID_CONFIG_URL": f"{emulator.url}/common/.well-known/openid-configuration"})


def test_fuzzed_requests_get_no_5xx_and_only_valid_notifications_are_enqueued(fuzz_settings, redis_client):
    app = create_app(fuzz_settings, redis_client=redis_client)
    queue = jobformat.queue(fuzz_settings.queue_name, redis_client)
    register(redis_client, TENANT, sid="sub-ok")
    seen = {"requests": 0, "enqueued": 0, "rejected_intake": 0}

    @_settings(int(REQUESTS * (1 - DOWN_SHARE)))
    @given(req=request)
    def one(req: dict) -> None:
        status, answer = _send(app, req)
        seen["requests"] += 1
        assert status < 500, (status, answer[:200], req)
        jobs = queue.jobs
        if not jobs:
            if req["path"] in INTAKE and req["method"] == "POST" and status >= 400:
                seen["rejected_intake"] += 1
            return
        ours = _ours_ids(req["data"]) if req["path"] in INTAKE and req["method"] == "POST" else set()
        for job in jobs:
            enqueued = job.args[0] if isinstance(job.args[0], list) else [job.args[0]]
            for notification in enqueued:
                assert notification.get("id") in ours, (notification, req)
                seen["enqueued"] += 1
        redis_client.flushdb()  # start the next request from an empty queue
        register(redis_client, TENANT, sid="sub-ok")

    one()
    print(f"fuzz (Redis up): {seen}")
    assert seen["requests"] >= 0.9 * REQUESTS * (1 - DOWN_SHARE)
    assert seen["enqueued"] > 0 and seen["rejected_intake"] > 0  # both paths were exercised


def test_fuzzed_requests_while_redis_is_down_get_503_never_another_5xx(fuzz_settings):
    app = create_app(fuzz_settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    seen = {"requests": 0, "503": 0}

    @_settings(max(20, int(REQUESTS * DOWN_SHARE)))
    @given(req=request)
    def one(req: dict) -> None:
        status, answer = _send(app, req)
        seen["requests"] += 1
        assert status < 500 or status == 503, (status, answer[:200], req)
        if status == 503:
            seen["503"] += 1
        if status == 202 and req["path"] in INTAKE:  # acknowledged only when there was nothing to persist
            assert not Collection.parse(req["data"]).notifications, req

    one()
    print(f"fuzz (Redis down): {seen}")
    assert seen["requests"] >= 0.9 * max(20, int(REQUESTS * DOWN_SHARE))
    assert seen["503"] > 0  # some requests needed Redis


def test_paths_that_look_like_host_names_reach_the_app_and_get_4xx(fuzz_settings, redis_client):
    """Found by the 100,000-request soak: "//." is a path on the wire, not a URL with a host."""
    app = create_app(fuzz_settings, redis_client=redis_client)
    for path in ("//.", "//evil.example/notifications", "/%2e%2e/notifications"):
        status, _ = _send(app, {"method": "POST", "path": path, "data": b'{"value": []}',
                                "ctype": "application/json", "params": {}, "headers": {}})
        assert 400 <= status < 500, (path, status)
