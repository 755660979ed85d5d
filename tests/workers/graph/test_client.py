"""The Graph client against the emulator: Retry-After honoured, back-off bounded, errors mapped, $batch."""

from __future__ import annotations

import email.utils

import pytest

from emulator.faults import FaultRule
from graphhook.core.errors import AccessDeniedError, GraphError, NotFoundError, ThrottledError
from workers.graph.client import GraphClient, error_for, mailbox_of, parse_retry_after


class Sleeps(list):
    """Records requested sleeps instead of sleeping (the clock is injected, tests never wait)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def user(emulator):
    return emulator.add_user("alice@contoso.com")


def _client(ctx, sleeps, **kwargs):
    return GraphClient(ctx.settings.graph_url, ctx.tokens.token, limiter=ctx.graph.limiter, sleep=sleeps, **kwargs)


def test_429_with_retry_after_2_waits_2_seconds_then_succeeds(emulator, ctx, user):
    message = emulator.deliver("alice@contoso.com", {"subject": "hello"})
    emulator.faults.add(FaultRule(category="graph", status=429, count=1, retry_after=2, path="/messages/"))
    sleeps = Sleeps()
    body = _client(ctx, sleeps).get(f"users/{user.id}/messages/{message['id']}")
    assert body["subject"] == "hello"
    assert sleeps == [2.0]  # not sooner, and exactly once
    gets = [r["status"] for r in emulator.request_log if message["id"] in r["path"]]
    assert gets == [429, 200]


def test_retry_after_as_http_date_is_honoured(emulator, ctx, user):
    now = 1_800_000_000.0
    header = email.utils.formatdate(now + 7, usegmt=True)
    assert parse_retry_after(header, now) == pytest.approx(7, abs=1)
    assert parse_retry_after("2.128") == pytest.approx(2.128)
    assert parse_retry_after("soon") is None


def test_503_without_retry_after_backs_off_exponentially_within_budget(emulator, ctx, user):
    message = emulator.deliver("alice@contoso.com", {"subject": "hello"})
    emulator.faults.add(FaultRule(category="graph", status=503, count=100, retry_after=None, path="/messages/"))
    sleeps = Sleeps()
    client = _client(ctx, sleeps, retry_budget=10.0, max_attempts=6)
    with pytest.raises(ThrottledError) as caught:
        client.get(f"users/{user.id}/messages/{message['id']}")
    assert caught.value.status == 503 and caught.value.code == "ServiceUnavailable"
    assert 1 <= len(sleeps) <= 5 and sum(sleeps) <= 10.0
    caps = [0.5 * 2 ** n for n in range(len(sleeps))]
    assert all(0 <= s <= cap for s, cap in zip(sleeps, caps))  # full jitter under a doubling cap


def test_graph_errors_map_to_the_hierarchy_without_leaking_the_query(emulator, ctx, user):
    with pytest.raises(NotFoundError) as caught:
        ctx.graph.get(f"users/{user.id}/messages/AAMkNOPE", params={"$select": "subject"})
    assert caught.value.code == "ErrorItemNotFound"
    assert "$select" not in str(caught.value)
    assert isinstance(error_for(403, {"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}}),
                      AccessDeniedError)
    assert type(error_for(400, "not json")) is GraphError


def test_mailbox_is_read_from_every_path_shape():
    assert mailbox_of("users/ABC-1/messages/x") == "abc-1"
    assert mailbox_of("/v1.0/users('a@b.com')/messages") == "a@b.com"
    assert mailbox_of("subscriptions/1") is None


def test_batch_returns_answers_in_request_order_or_reports_it_is_unsupported(emulator, ctx, user):
    ids = [emulator.deliver("alice@contoso.com", {"subject": f"m{i}"})["id"] for i in range(3)]
    requests_ = [{"method": "GET", "url": f"users/{user.id}/messages/{i}?$select=subject"} for i in ids]
    try:
        answers = ctx.graph.batch(requests_ + [{"method": "GET", "url": f"users/{user.id}/messages/AAMkNOPE"}])
    except GraphError as exc:  # the emulator may not serve $batch yet
        assert exc.status in (404, 405)
        pytest.skip("emulator does not serve $batch yet")
    assert [a["body"]["subject"] for a in answers[:3]] == ["m0", "m1", "m2"]
    assert answers[3]["status"] == 404


def test_a_refused_token_is_replaced_once_then_the_request_succeeds(emulator, ctx, user):
    tokens = ["not-a-valid-token"]
    client = GraphClient(ctx.settings.graph_url, lambda: tokens[-1],
                         on_unauthorized=lambda: tokens.append(ctx.tokens.token()))
    assert client.get(f"users/{user.id}")["id"] == user.id
    assert len(tokens) == 2
    stubborn = GraphClient(ctx.settings.graph_url, lambda: "not-a-valid-token", on_unauthorized=lambda: None)
    with pytest.raises(AccessDeniedError) as caught:
        stubborn.get(f"users/{user.id}")
    assert caught.value.status == 401 and "not-a-valid-token" not in str(caught.value)


def test_a_throttled_part_of_a_batch_is_sent_again_after_its_retry_after(emulator, ctx, user):
    ids = [emulator.deliver("alice@contoso.com", {"subject": f"b{i}"})["id"] for i in range(3)]
    emulator.faults.add(FaultRule(category="graph", status=429, count=1, retry_after=3, path=ids[1]))
    sleeps = Sleeps()
    client = _client(ctx, sleeps)
    answers = client.batch([{"method": "GET", "url": f"users/{user.id}/messages/{i}?$select=subject"} for i in ids])
    assert [a["status"] for a in answers] == [200, 200, 200]
    assert [a["body"]["subject"] for a in answers] == ["b0", "b1", "b2"]
    assert sleeps == [3.0]
    assert [r["status"] for r in emulator.request_log if r["path"].endswith("$batch")] == [200, 200]
