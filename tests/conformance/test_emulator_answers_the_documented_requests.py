"""(i) The emulator accepts every documented request (ids adapted) and answers with the documented status,
property names and JSON types: a misunderstanding shared by graphhook and its emulator shows up here."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.conformance import examples
from tests.conformance.conftest import mapping_for
from tests.emulator.conftest import Sink

MAILBOX_EXAMPLES = [n for n in examples.names(emulator=True) if n != "subscription-post"]


def _check(example: dict, response) -> None:
    documented = example["response"]
    assert response.status_code == documented["status"], response.text[:500]
    for name, value in (documented.get("headers") or {}).items():
        assert response.headers.get(name) == value, f"header {name}"
    problems = examples.mismatches(documented["body"], response.json(), exact=example.get("exact", False))
    unexpected, expected = examples.split_expected(problems, example.get("xfail", {}))
    assert not unexpected, f"{example['source']['path']} ({example['source']['example']}): {unexpected}"
    if expected:
        pytest.xfail(f"{sorted(set(example['xfail'].values()))}: {expected}")


@pytest.mark.parametrize("name", MAILBOX_EXAMPLES)
def test_documented_mail_request_gets_the_documented_answer(name, graph, mailbox):
    example = examples.load(name)
    mapping = mapping_for(example, mailbox)
    request = examples.adapt(example["request"], mapping)
    response = graph.request(request["method"], request["url"], headers=request.get("headers") or {},
                             data=json.dumps(request["body"]) if "body" in request else None)
    _check(example, response)


def test_documented_subscription_request_gets_the_documented_answer(emulator, graph, mailbox):
    example = examples.load("subscription-post")
    sink = Sink(emulator)
    try:
        mapping = mapping_for(example, {
            **mailbox, "notification_url": f"{sink.url}/notifications",
            "user_mailfolders": f"users/{mailbox['user']}/mailFolders",
            "expiration": (emulator.clock.now() + dt.timedelta(days=1)).isoformat().replace("+00:00", "Z")})
        request = examples.adapt(example["request"], mapping)
        response = graph.post("/subscriptions", json=request["body"], headers=request["headers"])
        _check(example, response)
        assert sink.handshakes, "the emulator validated the notification URL before answering 201"
    finally:
        sink.server.stop()


def test_reference_attachment_has_no_beta_properties(graph, mailbox):
    """v1.0's referenceAttachment has no sourceUrl or providerType (resources/referenceattachment.md at 0aca024)."""
    listed = graph.get(f"/users/{mailbox['user']}/messages/{mailbox['message']}/attachments").json()["value"]
    ref = next(a for a in listed if a["@odata.type"] == "#microsoft.graph.referenceAttachment")
    assert set(ref) - {"@odata.type"} == {"contentType", "id", "isInline", "lastModifiedDateTime", "name", "size"}
    expanded = graph.get(f"/users/{mailbox['user']}/messages/{mailbox['message']}?$expand=attachments").json()
    assert not {"sourceUrl", "providerType"} & {k for a in expanded["attachments"] for k in a}
