"""Rule conditions over email records built with the record's own field names."""

from __future__ import annotations

import copy

import pytest
import yaml

from graphhook.core.errors import ConfigError
from workers.triggers.rules import Organisation, Person, compile_condition

ORG = Organisation(domains=("contoso.com", "*.contoso.com"),
                   people=(Person("Alice Smith", "alice@contoso.com"), Person("Robert Jones", "bob@contoso.com")))
PDF_SHA = "a" * 64

BASE = {
    "schema": "graphhook.email/1", "mailbox": "alice@contoso.com", "folder": "inbox", "folderId": "AQMk-inbox",
    "id": "AAMk1", "internetMessageId": "<1@x>", "conversationId": "c1",
    "subject": "Action required: mailbox storage limit reached",
    "from": {"name": "Microsoft 365 Admin", "address": "no-reply@micros0ft-support.example.net"},
    "sender": {"name": "Microsoft 365 Admin", "address": "no-reply@micros0ft-support.example.net"},
    "replyTo": [], "to": [{"name": "Alice", "address": "alice@contoso.com"}], "cc": [], "bcc": [],
    "bodyText": None,
    "bodyHtml": '<p>Your mailbox is <b>almost full</b>. <a href="http://evil.example.net/r">https://portal.office.com</a></p>',
    "preview": "Your mailbox is almost full.",
    "headers": [{"name": "X-MS-Exchange-Organization-SCL", "value": "5"}, {"name": "Received", "value": "from mx"}],
    "authentication": {"spf": "fail", "dkim": "pass", "dmarc": "fail"},
    "urls": [{"url": "http://evil.example.net/r", "domain": "evil.example.net", "text": "https://portal.office.com",
              "textDomain": "portal.office.com", "mismatch": True}],
    "attachments": [
        {"id": "att1", "kind": "file", "name": "Storage_Upgrade.html", "extension": "html", "contentType": "text/html",
         "size": 120, "sha256": "b" * 64, "isInline": False},
        {"id": "att2", "kind": "item", "name": "Fwd: invoice", "extension": "", "contentType": None, "size": 5000,
         "isInline": False, "email": {"subject": "invoice", "attachments": [
             {"id": "n1", "kind": "file", "name": "Invoice.PDF", "extension": "pdf", "contentType": "application/pdf",
              "size": 2_000_000, "sha256": PDF_SHA, "isInline": False}]}},
    ],
    "categories": [], "isRead": False, "importance": "high", "webLink": "https://outlook/1",
}


def match(spec, record=None, org=ORG) -> bool:
    condition = compile_condition(yaml.safe_load(spec) if isinstance(spec, str) else spec, org)
    return condition(record or BASE)


def variant(**changes):
    record = copy.deepcopy(BASE)
    record.update(changes)
    return record


@pytest.mark.parametrize("spec, expected", [
    ("{sender: no-reply@micros0ft-support.example.net}", True),
    ("{sender: ['*@contoso.com', 'ceo@*']}", False),
    ("{sender: 'NO-REPLY@*'}", True),
    ("{sender_domain: '*.example.net'}", True),
    ("{sender_domain: [example.net]}", False),
    ("{recipient: '*@contoso.com'}", True),
    ("{display_name: 'microsoft|office'}", True),
    ("{subject: 'storage limit'}", True),
    ("{subject: '(?-i:STORAGE)'}", False),
    ("{body: 'almost full\\. https'}", True),     # html reduced to visible text
    ("{body_html: '<b>almost'}", True),
    ("{url_domain: '*.example.net'}", True),
    ("{url: 'evil\\.example\\.net/r$'}", True),
    ("{link_mismatch: true}", True),
    ("{link_mismatch: false}", False),
    ("{header: {name: x-ms-exchange-organization-scl, value: '^[5-9]$'}}", True),
    ("{header: {name: X-Spam-Flag}}", False),
    ("{authentication: {spf: [fail, softfail], dmarc: fail}}", True),
    ("{authentication: {dkim: fail}}", False),
    ("{mailbox: '*@contoso.com'}", True),
    ("{folder: [junkemail]}", False),
    ("{importance: high}", True),
])
def test_leaf_conditions(spec, expected):
    assert match(spec) is expected


@pytest.mark.parametrize("spec, expected", [
    ("{attachment: {extension: [html, htm]}}", True),
    ("{attachment: {name: '*.pdf'}}", True),                    # nested email's attachment, case-insensitive
    ("{attachment: {name: '*.pdf', nested: false}}", False),
    (f"{{attachment: {{sha256: '{PDF_SHA}'}}}}", True),
    ("{attachment: {content_type: 'application/*', min_size: '1 MB'}}", True),
    ("{attachment: {content_type: 'application/*', max_size: 1024}}", False),  # one attachment must satisfy all
    ("{attachment: {kind: item}}", True),
    ("{attachment: true}", True),
])
def test_attachment_conditions_include_nested_emails(spec, expected):
    assert match(spec) is expected


def test_attachment_condition_on_mail_without_attachments():
    assert match("{attachment: true}", variant(attachments=[])) is False


def test_combinators_and_implicit_all():
    assert match("{all: [{sender_domain: '*.example.net'}, {not: {authentication: {dmarc: pass}}}]}")
    assert match("{any: [{sender: 'x@y.z'}, {subject: storage}]}")
    assert not match("{not: {subject: storage}}")
    assert not match("{sender_domain: '*.example.net', subject: 'nothing like this'}")
    assert match("always")


def test_reply_to_in_another_domain():
    assert not match("{reply_to_mismatch: true}")  # no Reply-To at all
    assert match("{reply_to_mismatch: true}", variant(replyTo=[{"name": "", "address": "pay@collector.example"}]))
    same = variant(replyTo=[{"name": "", "address": "help@micros0ft-support.example.net"}])
    assert match("{reply_to_mismatch: false}", same)


def test_missing_authentication_counts_as_none():
    assert match("{authentication: {dmarc: none}}", variant(authentication=None))
    assert not match("{authentication: {dmarc: fail}}", variant(authentication=None))


@pytest.mark.parametrize("sender, expected", [
    ({"name": "Alice Smith", "address": "alice.smith@gmail.example"}, True),
    ({"name": "smith, alice", "address": "a@freemail.example"}, True),   # reordered, punctuation
    ({"name": "Alice Smith", "address": "alice@contoso.com"}, False),    # really internal
    ({"name": "Alice Smith", "address": "alice@mail.contoso.com"}, False),
    ({"name": "bob@contoso.com", "address": "x@evil.example"}, True),    # internal address as display name
    ({"name": "Carol White", "address": "carol@fabrikam.com"}, False),
])
def test_display_name_impersonation(sender, expected):
    assert match("{impersonates_internal: true}", variant(**{"from": sender, "sender": sender})) is expected


def test_errors_name_the_field_path():
    with pytest.raises(ConfigError, match=r"field when\.any\[0\]\.not\.attachment\.size: unknown attachment test"):
        compile_condition({"any": [{"not": {"attachment": {"size": 3}}}]})
    with pytest.raises(ConfigError, match="field when.all: expected a non-empty list"):
        compile_condition({"all": []})


# --- attacker-controlled text: every test is one bounded, linear pass ----------------------------
# Sizes from issue 17: each of these took seconds to minutes with backtracking regexes. The
# assertions count what the engine is given; the timeout is only a safety net.
SUBJECT_REGEX = "(storage|password|mailbox).*(limit|expire|verify|reached)"  # graphhook.example.yaml


class _Spy:
    """Stands in for an engine or module: records the length of every string it is handed."""

    def __init__(self, real, lengths=None):
        self._real, self.lengths = real, [] if lengths is None else lengths

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self.lengths += [len(a) for a in args if isinstance(a, (str, bytes))]
            result = attr(*args, **kwargs)
            return _Spy(result, self.lengths) if name == "compile" else result
        return call


@pytest.fixture
def re2_spy(monkeypatch):
    import re2

    from workers.triggers import patterns
    spy = _Spy(re2)
    monkeypatch.setattr(patterns, "re2", spy)
    return spy


@pytest.mark.timeout(60)
def test_user_regexes_run_on_re2_and_see_a_bounded_prefix_of_a_long_subject(re2_spy):
    from workers.triggers.patterns import FIELD_CHARS
    condition = compile_condition({"subject": SUBJECT_REGEX})
    compiled = len(re2_spy.lengths)
    long_subject = "storage " + "x" * 40_000 + " limit"
    assert condition(variant(subject=long_subject)) is False  # "limit" lies past the bound
    assert condition(variant(subject="storage " + "x" * 100 + " limit")) is True
    searched = re2_spy.lengths[compiled:]
    assert searched and max(searched) <= FIELD_CHARS  # the engine never saw the 40 KB subject


@pytest.mark.timeout(60)
def test_body_regexes_see_at_most_the_body_bound(re2_spy):
    from workers.triggers.patterns import BODY_CHARS
    condition = compile_condition({"any": [{"body": "(a|b)*c"}, {"body_html": "(a|b)*c"}]})
    before = len(re2_spy.lengths)
    assert condition(variant(bodyText="ab" * BODY_CHARS + "c", bodyHtml="<p>" + "ab" * BODY_CHARS + "c")) is False
    searched = re2_spy.lengths[before:]
    assert len(searched) == 2 and max(searched) <= BODY_CHARS


@pytest.mark.parametrize("pattern", [r"(a)\1", r"invoice(?=\s)", r"(?<!re: )invoice", r"(?>a+)b", "a{1001}"])
def test_patterns_re2_cannot_run_in_linear_time_are_refused_at_load_quoting_them(pattern):
    with pytest.raises(ConfigError) as info:
        compile_condition({"all": [{"subject": pattern}]})
    message = str(info.value)
    assert "when.all[0].subject" in message and repr(pattern) in message and "RE2" in message


def test_regexes_are_case_insensitive_unless_they_say_otherwise():
    assert match({"subject": "ACTION REQUIRED"}) is True
    assert match({"subject": "(?-i)ACTION REQUIRED"}) is False  # Python's re refused this documented form
    assert match({"subject": "(?-i)Action required"}) is True


@pytest.mark.timeout(60)
def test_impersonation_check_on_a_40000_character_display_name_hands_regexes_a_bounded_name(monkeypatch):
    import re as real_re

    from workers.triggers import rules
    from workers.triggers.patterns import FIELD_CHARS
    condition = compile_condition({"impersonates_internal": True}, ORG)
    spy = _Spy(real_re)
    monkeypatch.setattr(rules, "re", spy)
    sender = {"name": "a" * 40_000, "address": "x@evil.example"}
    assert condition(variant(**{"from": sender, "sender": sender})) is False
    assert spy.lengths and max(spy.lengths) <= FIELD_CHARS
    named = {"name": "Alice Smith <alice.smith@contoso.com>", "address": "x@evil.example"}
    assert condition(variant(**{"from": named, "sender": named})) is True  # still caught


@pytest.mark.timeout(60)
def test_html_bodies_are_parsed_once_by_the_records_parser_on_a_bounded_prefix(monkeypatch):
    from workers.records import urls
    from workers.triggers import rules
    seen = []

    def counting_scan(markup):
        seen.append(len(markup))
        return real_scan(markup)

    real_scan = urls.scan_html
    monkeypatch.setattr(rules, "scan_html", counting_scan, raising=False)
    monkeypatch.setattr(urls, "scan_html", counting_scan)
    condition = compile_condition({"body": "nothing here"})
    assert condition(variant(bodyText=None, bodyHtml="<style>" + "<a " * 80_000)) is False  # 33 s before
    assert len(seen) == 1
    assert condition(variant(bodyText=None, bodyHtml="<p>there is <b>nothing</b> here</p>")) is True
