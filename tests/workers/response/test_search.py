"""Message and mailbox search against the real emulator over HTTPS: every page followed, every criterion applied."""

from __future__ import annotations

import datetime as dt

import pytest

from graphhook.core.errors import ConfigError
from workers import runtime
from workers.response import mailops
from workers.response.search import MessageQuery, iter_mailboxes, iter_messages, parse_when

BOX = "alice@contoso.com"
NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def graph(settings, redis_client, emulator):
    emulator.add_user(BOX)
    mailops.forget_folders()
    ctx = runtime.build(settings, redis_client)
    yield ctx.graph
    ctx.graph.session.close()
    mailops.forget_folders()


def add(emulator, subject: str, sender: str = "ceo@evil.example", hours_ago: float = 1, **extra) -> dict:
    received = (NOW - dt.timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    folder = extra.pop("folder", "inbox")
    spec = {"subject": subject, "from": sender, "receivedDateTime": received, **extra}
    return emulator.mail.add_message(BOX, spec, folder)[2]


def list_requests(emulator) -> list[dict]:
    return [r for r in emulator.request_log if r["method"] == "GET" and r["path"].endswith(f"/users/{BOX}/messages")]


def test_search_returns_all_120_matches_across_pages(graph, emulator):
    for i in range(120):
        add(emulator, f"Invoice {i}", hours_ago=i / 10)
    for i in range(30):
        add(emulator, f"Lunch {i}", sender="colleague@contoso.com")
    found = list(iter_messages(graph, BOX, MessageQuery(sender="CEO@evil.example")))
    assert sorted(m["subject"] for m in found) == sorted(f"Invoice {i}" for i in range(120))
    assert len({m["id"] for m in found}) == 120
    assert len(list_requests(emulator)) == 2  # 100 per page: the second page was fetched, not dropped

    small_pages = list(iter_messages(graph, BOX, MessageQuery(sender="ceo@evil.example"), page_size=7))
    assert len(small_pages) == 120 and len(list_requests(emulator)) == 2 + 18


def test_limit_stops_early(graph, emulator):
    for i in range(30):
        add(emulator, f"Invoice {i}")
    assert len(list(iter_messages(graph, BOX, MessageQuery(subject_contains="invoice"), limit=12, page_size=10))) == 12
    assert len(list_requests(emulator)) == 2


def test_every_criterion_applies(graph, emulator):
    target = add(emulator, "Urgent: wire transfer", internetMessageId="<o'brien-1@evil.example>", hours_ago=2)
    add(emulator, "Urgent: wire transfer", internetMessageId="<other@evil.example>", hours_ago=2)
    add(emulator, "Urgent: wire transfer", hours_ago=50)
    add(emulator, "Urgent: wire transfer today", hours_ago=2)
    add(emulator, "Urgent: wire transfer", sender="colleague@contoso.com", hours_ago=2)

    def subjects(**criteria) -> list[str]:
        return sorted(m["internetMessageId"] for m in iter_messages(graph, BOX, MessageQuery(**criteria)))

    assert subjects(internet_message_id="<o'brien-1@evil.example>") == [target["internetMessageId"]]
    window = {"since": NOW - dt.timedelta(hours=24), "until": NOW}
    assert len(subjects(sender="ceo@evil.example", subject="urgent: WIRE transfer", **window)) == 2
    assert len(subjects(sender="ceo@evil.example", subject_contains="wire", **window)) == 3
    assert len(subjects(subject_contains="wire")) == 5
    assert len(subjects(sender="ceo@evil.example", until=NOW - dt.timedelta(hours=24))) == 1


def test_body_search_and_folder(graph, emulator):
    add(emulator, "Pay", body="Click https://evil.example/pay to pay")
    add(emulator, "Pay", body="Nothing to see", folder="junkemail")
    add(emulator, "Pay", body="Click https://evil.example/pay now", folder="junkemail")
    assert len(list(iter_messages(graph, BOX, MessageQuery(body="evil.example/pay")))) == 2
    in_junk = list(iter_messages(graph, BOX, MessageQuery(body="evil.example/pay"), folder="Junk Email"))
    assert len(in_junk) == 1
    assert "search" in list_requests(emulator)[0]["query"]


def test_body_phrase_must_appear_as_a_phrase(graph, emulator):
    add(emulator, "A", html="<p>Please <b>verify   your</b> account</p>")
    add(emulator, "B", body="Your manager asked us to verify the account")  # the words, not the phrase
    add(emulator, "C", body="verify your account", sender="it@contoso.com")
    found = iter_messages(graph, BOX, MessageQuery(body="Verify your account", sender="ceo@evil.example"))
    assert [m["subject"] for m in found] == ["A"]


def test_search_value_is_quoted_kql_without_inner_quotes():
    query = MessageQuery(body='pay "now"', sender="ceo@evil.example", subject_contains="wire (urgent)")
    assert query.params() == {"$search": '"body:pay AND body:now AND from:ceo@evil.example AND subject:wire '
                                         'AND subject:urgent"'}


def test_every_mailbox_of_the_tenant_across_pages(graph, emulator):
    for i in range(120):
        emulator.add_user(f"user{i:03d}@contoso.com")
    boxes = list(iter_mailboxes(graph, page_size=50))
    assert sorted(boxes) == sorted([BOX] + [f"user{i:03d}@contoso.com" for i in range(120)])
    assert len([r for r in emulator.request_log if r["path"] == "/v1.0/users"]) == 3
    assert len(list(iter_mailboxes(graph, limit=5, page_size=50))) == 5


def test_filter_text_quotes_literals():
    query = MessageQuery(internet_message_id="<o'brien@x>", sender="a@b.c", since=NOW)
    assert query.params() == {"$filter": "receivedDateTime ge 2026-11-27T12:00:00Z and "
                                         "internetMessageId eq '<o''brien@x>' and from/emailAddress/address eq 'a@b.c'"}
    assert MessageQuery.from_dict(query.to_dict()) == query


@pytest.mark.parametrize("text, expected", [
    ("24h", NOW - dt.timedelta(hours=24)), ("7d", NOW - dt.timedelta(days=7)),
    ("2026-11-01", dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)),
    ("2026-11-01T08:30:00+01:00", dt.datetime(2026, 11, 1, 7, 30, tzinfo=dt.timezone.utc))])
def test_parse_when(text, expected):
    assert parse_when(text, now=NOW) == expected


def test_bad_values_are_quoted():
    with pytest.raises(ConfigError, match="'yesterday'"):
        parse_when("yesterday")
    with pytest.raises(ConfigError, match="'ceo'"):
        MessageQuery(sender="ceo")
    with pytest.raises(ConfigError, match="must be before"):
        MessageQuery(sender="a@b.c", since=NOW, until=NOW)


def test_a_sender_domain_and_a_recipient_are_searched_then_checked_exactly():
    def message(sender: str, *to: str) -> dict:
        return {"from": {"emailAddress": {"address": sender}},
                "toRecipients": [{"emailAddress": {"address": a}} for a in to]}

    query = MessageQuery(sender="*@Fabrikam.com")
    assert query.sender == "fabrikam.com" and query.sender_domain == "fabrikam.com"
    assert query.params() == {"$search": '"from:fabrikam.com"'}  # Graph refuses endswith() on addresses
    assert query.matches(message("billing@fabrikam.com")) and query.matches(message("x@mail.fabrikam.com"))
    assert not query.matches(message("ceo@notfabrikam.com")) and not query.matches(message("fabrikam.com@evil.example"))
    assert MessageQuery(sender="ceo@fabrikam.com").params() == {"$filter": "from/emailAddress/address eq 'ceo@fabrikam.com'"}
    to_bob = MessageQuery(recipient="Bob@contoso.com", since=parse_when("2026-01-01"))
    assert to_bob.params() == {"$search": '"recipients:bob@contoso.com"'}
    assert to_bob.matches({**message("a@x.example", "bob@contoso.com"), "receivedDateTime": "2026-02-01T00:00:00Z"})
    assert not to_bob.matches({**message("a@x.example", "bobby@contoso.com"), "receivedDateTime": "2026-02-01T00:00:00Z"})
    assert MessageQuery.from_dict(to_bob.to_dict()) == to_bob
    for bad in ("not a domain", "fabrikam", "@"):
        with pytest.raises(ConfigError, match="--from takes a full address"):
            MessageQuery(sender=bad)
