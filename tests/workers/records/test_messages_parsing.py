"""Pure parts of the record: Authentication-Results verdicts, URL mismatch rules, the streaming JSON reader."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from workers.records import attachments, authresults, urls


def test_verdicts_ignore_comments_and_keep_the_first_hop():
    headers = [
        {"name": "Authentication-Results", "value": "spf=temperror (dns timeout; dkim=pass) smtp.mailfrom=a.com; "
                                                     "dkim=none (message not signed) header.d=none;dmarc=permerror"},
        {"name": "Authentication-Results", "value": "spf=pass; dkim=pass; dmarc=pass"},
    ]
    assert authresults.from_headers(headers) == {"spf": "temperror", "dkim": "none", "dmarc": "permerror"}


def test_verdicts_fall_back_to_arc_and_are_none_when_absent():
    arc = [{"name": "ARC-Authentication-Results", "value": "i=1; mx.example; spf=neutral; dmarc=FAIL"}]
    assert authresults.from_headers(arc) == {"spf": "neutral", "dkim": None, "dmarc": "fail"}
    assert authresults.from_headers([{"name": "Subject", "value": "spf=pass"}]) == dict.fromkeys(("spf", "dkim", "dmarc"))


def test_link_text_showing_another_site_is_a_mismatch_but_a_subdomain_is_not():
    body = ('<a href="https://login.contoso.com/x">contoso.com</a>'
            '<a href="https://contoso.com.evil.net/x">https://contoso.com/login</a>'
            '<a href="https://fabrikam.com">Click here</a>'
            '<a href="mailto:a@b.com">a@b.com</a> and www.example.org/page.')
    found = urls.extract(body)
    assert [(u["domain"], u["textDomain"], u["mismatch"]) for u in found] == [
        ("login.contoso.com", "contoso.com", False),
        ("contoso.com.evil.net", "contoso.com", True),
        ("fabrikam.com", None, False),
        ("www.example.org", None, False),
    ]


def test_html_body_text_skips_styles_and_keeps_lines():
    found, text = urls.scan_html("<html><head><style>p{}</style></head><body><p>Hello</p><p>see "
                                 "<a href='https://x.org'>this</a></p></body></html>")
    assert text == "Hello\nsee this" and found[0]["text"] == "this"


@hsettings(max_examples=40, deadline=None)
@given(payloads=st.lists(st.binary(min_size=0, max_size=3000), min_size=1, max_size=4),
       names=st.lists(st.text(max_size=20), min_size=4, max_size=4),
       chunk=st.integers(min_value=1, max_value=700), escape=st.booleans())
def test_streamed_reader_gives_the_same_document_and_bytes_as_json_loads(payloads, names, chunk, escape):
    items = []
    for data, name in zip(payloads, names):
        encoded = base64.b64encode(data).decode()
        items.append({"name": name, "contentBytes": encoded, "size": len(data)})
    text = json.dumps({"value": items, "note": "é\"\\"}, ensure_ascii=escape)
    if escape:
        text = text.replace("/", "\\/")  # some encoders escape the solidus
    body = text.encode()
    old_inline, old_divert = attachments.INLINE_JSON, attachments.DIVERT_AFTER
    attachments.INLINE_JSON, attachments.DIVERT_AFTER = 64, 100
    try:
        doc, sinks = attachments.read_json([body[i:i + chunk] for i in range(0, len(body), chunk)],
                                           lambda: attachments.Sink(max_bytes=10**6, spool_bytes=512))
    finally:
        attachments.INLINE_JSON, attachments.DIVERT_AFTER = old_inline, old_divert
    expected = json.loads(body)
    assert doc["note"] == expected["note"]
    for got, want, data in zip(doc["value"], expected["value"], payloads):
        assert got["name"] == want["name"] and got["size"] == want["size"]
        content = got["contentBytes"]
        if content.startswith(attachments.SPOOL_MARK):
            assert sinks[content].read() == data
        else:
            assert base64.b64decode(content) == data


class _CountingParser:
    """Wraps the lxml parser ``urls`` builds: counts feeds and the characters fed."""

    def __init__(self, real):
        self.real, self.fed = real, []

    def feed(self, data):
        self.fed.append(len(data))
        return self.real.feed(data)

    def close(self):
        return self.real.close()


# Each took from 3 s to much longer in CPython 3.11's html.parser ('<a ' * 8000 alone: 29 s).
PATHOLOGICAL = ["<a " * 80_000, '<a href="x' * 80_000, "<!--" * 60_000, "<style>" + "<a " * 80_000,
                "<p>" + "<b><i><font>" * 100_000 + "x"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("markup", PATHOLOGICAL, ids=["unclosed-tags", "unclosed-attrs", "comments", "style", "nesting"])
def test_hostile_markup_is_fed_once_to_a_linear_parser_and_only_up_to_the_bound(monkeypatch, markup):
    parsers = []

    def counting(target):
        parsers.append(_CountingParser(real_parser(target)))
        return parsers[-1]

    real_parser = urls._parser
    monkeypatch.setattr(urls, "_parser", counting)
    found, text = urls.scan_html(markup)
    assert len(parsers) == 1 and len(parsers[0].fed) == 1  # one parser, one pass
    assert parsers[0].fed[0] <= 4 * urls.HTML_CHARS  # UTF-8 bytes of at most HTML_CHARS characters
    assert found == []


def test_links_past_the_html_bound_are_not_scanned_but_earlier_ones_are():
    early = '<a href="http://early.example/">https://portal.office.com</a>'
    late = '<a href="http://late.example/">x</a>'
    found, _text = urls.scan_html(early + "<p>" + "x" * urls.HTML_CHARS + "</p>" + late)
    assert [u["domain"] for u in found] == ["early.example"] and found[0]["mismatch"] is True


def test_a_meta_charset_or_a_lone_surrogate_in_the_body_changes_nothing():
    found, text = urls.scan_html('<meta charset="iso-8859-1"><p>Grüße \ud800 <a href="https://x.example/">hier</a></p>')
    assert text.startswith("Grüße") and found[0]["domain"] == "x.example"


@pytest.mark.parametrize("shown, domain", [
    ("https://portal.office.com/" + "a" * 100_000, "portal.office.com"),
    ("https://" + "a" * 100_000, None),
    ("user@portal.office.com", "portal.office.com"),
    ("portal.office.com:443/x", "portal.office.com"),
    ("Click " * 20_000, None),
])
def test_the_domain_a_long_link_text_shows_is_found_in_one_bounded_pass(shown, domain):
    assert urls.text_domain(shown) == domain


def test_a_body_past_the_bound_is_kept_whole_and_the_cut_is_logged(caplog):
    from workers.records.messages import email_record
    body = '<a href="http://early.example/">x</a>' + "<p>" + "y" * urls.HTML_CHARS + '</p><a href="http://late.example/">z</a>'
    with caplog.at_level("INFO", logger="graphhook.messages"):
        record = email_record({"id": "m1", "body": {"contentType": "html", "content": body}}, mailbox="a")
    assert record["bodyHtml"] == body
    assert [u["domain"] for u in record["urls"]] == ["early.example"]
    assert any("m1" in r.getMessage() and "only the first" in r.getMessage() for r in caplog.records)
