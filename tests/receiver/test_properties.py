"""Property-based intake tests: whatever Graph (or anyone) POSTs, no 5xx except 503 for an unavailable
Redis, and nothing from a rejected notification is ever enqueued.

Examples per test: GRAPHHOOK_HYPOTHESIS_EXAMPLES (default 60, kept small: the machine is shared).
"""

from __future__ import annotations

import json
import os
import string

import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from graphhook.core import jobformat
from graphhook.core.errors import MalformedNotification
from graphhook.core.notifications import Collection, MessageRef
from graphhook.redis_server import free_port
from receiver.app import create_app

from .conftest import STATE, register

EXAMPLES = int(os.environ.get("GRAPHHOOK_HYPOTHESIS_EXAMPLES", "60"))
TENANT = "11111111-2222-3333-4444-555555555555"
SETTINGS = hsettings(max_examples=EXAMPLES, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

text = st.text(max_size=40)
json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(text, inner, max_size=4), max_leaves=12)

# A notification-shaped item where every field may be right, wrong, missing or of the wrong type.
item = st.fixed_dictionaries({}, optional={
    "subscriptionId": st.sampled_from(["sub-ok", "sub-unknown", ""]) | json_value,
    "clientState": st.sampled_from([STATE, "wrong", STATE.upper(), STATE + " "]) | json_value,
    "tenantId": st.sampled_from([TENANT, TENANT.upper(), "00000000-0000-0000-0000-000000000000"]) | json_value,
    "changeType": st.sampled_from(["created", "updated", "deleted", "Created", "created,updated"]) | json_value,
    "lifecycleEvent": st.sampled_from(["missed", "reauthorizationRequired", "subscriptionRemoved", "other"]) | json_value,
    # The subscription watches user u1 (conftest.register): its mailbox in any casing, others' never.
    "resource": st.sampled_from(["Users/u1/Messages/m1", "users('U1')/messages('m')", "Users('u')/messages('m')",
                                 "Users/u2/Messages/m1", "Users/u1/Events/e1"]) | json_value,
    "resourceData": st.just({"id": "m1"}) | json_value,
    "subscriptionExpirationDateTime": text,
    "id": st.uuids().map(str),
})
# A valid notification of ours, sometimes with one field spoiled: exercises the accepting path too.
valid_item = st.builds(lambda i, spoil, value: {
    **{"id": f"v{i}", "subscriptionId": "sub-ok", "clientState": STATE, "tenantId": TENANT, "changeType": "created",
       "resource": f"Users/u1/Messages/m{i}", "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z"},
    **({spoil: value} if spoil else {})},
    st.integers(0, 10**6), st.sampled_from([None, None, "clientState", "tenantId", "subscriptionId", "lifecycleEvent",
                                            "changeType", "resource"]), json_value)
collection = st.fixed_dictionaries({"value": st.lists(valid_item | item | json_value, max_size=6)},
                                   optional={"validationTokens": st.lists(text, max_size=2) | json_value})
collection_bytes = collection.map(lambda c: json.dumps(c).encode())
body = st.one_of(collection_bytes, collection_bytes, collection_bytes,  # weighted towards plausible bodies
                 json_value.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200))
header_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)  # HTTP cannot carry CR/LF
json_type = st.sampled_from(["application/json", "application/json; charset=utf-8"])
content_type = st.one_of(json_type, json_type, st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "",
                                                                "application/merge-patch+json"]), header_text)
extra_headers = st.dictionaries(
    st.sampled_from(["Content-Encoding", "Accept", "X-Forwarded-For", "Authorization", "Transfer-Encoding",
                     "Client-Request-Id", "X-Custom"]), header_text, max_size=3)
query = st.dictionaries(st.sampled_from(["validationToken", "x", "validationtoken", ""]) | text,
                        st.text(alphabet=string.printable, max_size=60), max_size=2)


def _ours(raw: object) -> bool:
    """What the receiver may enqueue: our subscription, its clientState, our tenant, a change in its mailbox."""
    if not (isinstance(raw, dict) and raw.get("subscriptionId") == "sub-ok" and raw.get("clientState") == STATE
            and isinstance(raw.get("tenantId"), str) and raw["tenantId"].lower() == TENANT):
        return False
    if "changeType" not in raw:
        return True
    try:
        return MessageRef.from_resource(raw.get("resource") if isinstance(raw.get("resource"), str) else "").is_user("u1")
    except MalformedNotification:
        return False


@pytest.fixture
def make_app(redis_client, settings):
    """An app factory (a fixture whose repr holds no secret: hypothesis prints its arguments)."""
    def make(**changes):
        return create_app(settings.replace(tenant_id=TENANT, **changes), redis_client=redis_client)
    make.queue = jobformat.queue(settings.queue_name, redis_client)
    return make


@SETTINGS
@given(data=body, ctype=content_type, params=st.just({}) | query, headers=st.just({}) | extra_headers)
def test_no_5xx_and_nothing_rejected_is_enqueued(redis_client, make_app, data, ctype, params, headers):
    redis_client.flushdb()
    register(redis_client, TENANT, sid="sub-ok")
    app = make_app(max_body_bytes=4096)
    headers = {k: v for k, v in headers.items() if k != "Transfer-Encoding" or v == "chunked"}
    response = app.test_client().post("/notifications", data=data, query_string=params,
                                      headers={**headers, **({"Content-Type": ctype} if ctype else {})})
    assert response.status_code in (200, 202, 400, 413, 415), response.data
    try:
        sent = json.loads(data)
    except ValueError:
        sent = None
    ours = {raw["id"] for raw in (sent.get("value") or []) if _ours(raw) and "id" in raw} \
        if isinstance(sent, dict) and isinstance(sent.get("value"), list) else set()
    jobs = make_app.queue.jobs
    event("some notifications enqueued" if jobs else "nothing enqueued")
    for job in jobs:
        enqueued = job.args[0] if isinstance(job.args[0], list) else [job.args[0]]
        for notification in enqueued:
            assert notification.get("id") in ours


@SETTINGS
@given(items=st.lists(st.builds(lambda i, kind: {
    "id": f"n{i}", "subscriptionId": "sub-ok", "clientState": STATE, "tenantId": TENANT,
    "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
    **({"changeType": "created", "resource": f"Users/u1/Messages/m{i}"} if kind else {"lifecycleEvent": "missed"})},
    st.integers(0, 10**6), st.booleans()), min_size=1, max_size=20))
def test_valid_collections_are_enqueued_whole(redis_client, make_app, items):
    redis_client.flushdb()
    register(redis_client, TENANT, sid="sub-ok")
    assert make_app().test_client().post("/lifecycle", json={"value": items}).status_code == 202
    jobs = make_app.queue.jobs
    enqueued = [n["id"] for j in jobs for n in (j.args[0] if isinstance(j.args[0], list) else [j.args[0]])]
    assert sorted(enqueued) == sorted(i["id"] for i in items)
    assert sum(j.func_name.endswith("process_notifications") for j in jobs) <= 1


@SETTINGS
@given(data=body, ctype=content_type, params=st.just({}) | query)
def test_redis_down_is_503_never_500_or_202(down_app, data, ctype, params):
    app = down_app
    response = app.test_client().post("/notifications", data=data, query_string=params,
                                      headers={"Content-Type": ctype} if ctype else {})
    assert response.status_code in (200, 202, 400, 413, 415, 503), response.data
    if response.status_code == 202:  # allowed only when there was nothing to persist
        assert not Collection.parse(data).notifications
    if response.status_code == 503:
        assert b"retry" in response.data


@pytest.fixture
def down_app(settings):
    """The receiver pointed at a closed loopback port: Redis is unavailable for real."""
    app = create_app(settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0", tenant_id=TENANT))
    app.__class__.__repr__ = lambda self: f"<receiver {self.name}>"
    return app


@SETTINGS
@given(token=st.text(st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_handshake_echoes_any_token_exactly(make_app, token):
    from urllib.parse import quote

    app = make_app()
    response = app.test_client().post(f"/lifecycle?validationToken={quote(token, safe='')}",
                                      headers={"Content-Type": "text/plain; charset=utf-8"})
    assert response.status_code == 200
    assert response.get_data(as_text=True) == token
    assert response.headers["Content-Type"].startswith("text/plain")


@SETTINGS
@given(depth=st.integers(1, 3000), rich=st.booleans())
def test_any_nesting_of_resource_data_is_202_or_400_never_500(redis_client, make_app, depth, rich):
    redis_client.flushdb()
    register(redis_client, TENANT, sid="sub-ok")
    nested: object = {"id": "m1"}
    for _ in range(depth):
        nested = {"a": [nested]} if rich else {"a": nested}
    item = {"subscriptionId": "sub-ok", "clientState": STATE, "tenantId": TENANT, "changeType": "created",
            "resource": "Users/u1/Messages/m1", "resourceData": nested}
    try:
        data = json.dumps({"value": [item]})
    except RecursionError:  # deeper than this test process can even write: nothing to send
        return
    response = make_app().test_client().post("/notifications", data=data, content_type="application/json")
    assert response.status_code in (202, 400), response.data[:200]
    assert (response.status_code == 202) == bool(make_app.queue.jobs)
