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
