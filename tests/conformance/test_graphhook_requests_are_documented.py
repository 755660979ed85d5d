"""(iii) graphhook's own requests use only documented paths, query options, headers and property names,
and (issue 18) the id a responder receives still works after a rule moved the message.

One demo-like run: the receiver, a real ``graphhook worker`` process, a quarantine rule with a signed
webhook, then what an operator does next (responder actions, mail with a large attachment, resync,
search and purge, renew, reauthorize, delete). The worker's traffic is read from the emulator's request log (method, path,
query, ``Prefer``); the in-process calls are also recorded on the wire (every header and JSON body).
"""

from __future__ import annotations

import json
import textwrap
from urllib.parse import parse_qsl, unquote

import requests

from emulator.seed import PHISHING
from graphhook.core import keys
from tests.conformance import documented
from tests.conftest import wait_for
from tests.workers.sink import Sink
from workers import runtime
from workers.graph import preferences, uploads
from workers.response import mailops
from workers.response.purge import Purge
from workers.response.purge_model import PurgeSpec
from workers.response.search import MessageQuery
from workers.subscriptions import operations, resync

SECRET = "whsec-conformance-0123456789abcdef"
ALICE, SECOPS = "alice@contoso.com", "secops@contoso.com"


def _record_wire(session: requests.Session) -> list[requests.PreparedRequest]:
    sent: list[requests.PreparedRequest] = []
    session.hooks["response"].append(lambda response, *args, **kwargs: sent.append(response.request))
    return sent


def _problems(method: str, path: str, query: str, prefer: str | None) -> list[str]:
    where = f"{method} {path}?{query}"
    found = documented.route(method, path)
    if found is None:
        return [f"{where}: no documented path"]
    page, names = found
    problems = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in documented.QUERY_OPTIONS:
            problems.append(f"{where}: query option {key!r} is not documented")
        if key == "$select":
            problems += [f"{where}: $select {n!r} is not a property ({page})" for n in value.split(",") if n not in names]
        if key == "$expand" and value not in documented.EXPANDS:
            problems.append(f"{where}: $expand={value} is not documented")
    problems += [f"{where}: Prefer {p!r} is not documented" for p in documented.prefer_ok(prefer or "")]
    return problems


def test_graphhook_speaks_only_documented_graph_and_ids_survive_the_quarantine(
        emulator, live_settings, redis_client, start_worker, tmp_path, monkeypatch):
    for address in (ALICE, SECOPS):
        emulator.add_user(address)
    sink = Sink().start()
    config = tmp_path / "graphhook.yaml"
    config.write_text(textwrap.dedent(f"""
        mailboxes: [{ALICE}]
        webhooks:
          soar: {{url: "{sink.url}", secret_env: CONFORMANCE_SECRET, format: insightconnect, backoff: [1, 2]}}
        rules:
          - name: quarantine-phishing
            when: {{authentication: {{dmarc: fail}}}}
            actions: [{{move: Quarantine}}, {{webhook: soar}}]
            stop: true
          - name: everything-else
            when: always
            actions: [{{categorise: Seen}}]
    """))
    monkeypatch.setenv("GRAPHHOOK_CONFIG", str(config))
    monkeypatch.setenv("CONFORMANCE_SECRET", SECRET)
    try:
        ctx = runtime.build(live_settings, redis_client)
        wire = _record_wire(ctx.graph.session)
        sub = operations.create(ctx.graph, redis_client, live_settings, ALICE, "inbox")
        start_worker()
        phish = emulator.deliver(ALICE, PHISHING)
        emulator.deliver(ALICE, {"subject": "Lunch?", "body": "Friday?", "from": "carol@fabrikam.com",
                                 "attachments": [{"kind": "item", "name": "fw", "item": {"subject": "inner"}},
                                                 {"kind": "reference", "name": "plan.docx"}]})
        wait_for(lambda: sink.requests, timeout=90)
        alert = json.loads(sink.requests[0].body)["icon_email"]  # the InsightConnect plugin's trigger output

        # The rule moved the phish. The id the SOAR received is the immutable one, so it still names the
        # message in Quarantine; the regular id Outlook gave it at delivery died with the move.
        alice = emulator.mail.user(ALICE)
        assert alert["id"] == phish["_immutableId"] and alice.find_message(alert["id"])[0].display_name == "Quarantine"
        # An analyst releases it in Outlook (another move): the ids graphhook handed out still work.
        with emulator.mail.lock:
            emulator.mail.move(alice, alice.find_message(alert["id"])[1], alice.folder("inbox"))
        logged = [json.loads(e)["email"]["id"] for e in redis_client.lrange(keys.EVENTS, 0, -1)]
        for handed_out in (alert["id"], *logged):
            fetched = ctx.graph.get(f"users/{ALICE}/messages/{handed_out}", params={"$select": "subject,parentFolderId"})
            assert fetched["parentFolderId"] == alice.folder("inbox").id and fetched["id"] == handed_out
        assert emulator.requests("GET", phish["id"]) == []  # nobody ever needed the short-lived regular id
        gone = requests.get(f"{emulator.graph_url}/users/{ALICE}/messages/{phish['id']}", verify=str(emulator.ca_path),
                            headers={"Authorization": f"Bearer {ctx.tokens.token()}"}, timeout=30)
        assert gone.status_code == 404  # as documented: without immutable ids, a move changes the id

        # What a responder does next, with that id: forward it, read it, delete it; then resync, search, purge.
        mailops.forward(ctx.graph, ALICE, alert["id"], [SECOPS], comment="look at this")
        mailops.reply(ctx.graph, ALICE, alert["id"], "Reported to security, thank you.")
        mailops.mark_read(ctx.graph, ALICE, alert["id"])
        evidence = tmp_path / "evidence.bin"
        evidence.write_bytes(b"\x00" * (4 * 1024 * 1024))  # past sendMail's 4 MB: a draft and an upload session
        assert uploads.send_files(ctx.graph, SECOPS, [ALICE], "Evidence", "Attached.",
                                  files=[uploads.LocalFile.open(evidence)]) == "draft"
        mailops.send_mail(ctx.graph, SECOPS, [ALICE], "All clear", "Nothing else found.")
        resync.resync_folder(ctx, ALICE, "inbox", sub.user_id)
        report = Purge.create(ctx.graph, redis_client, PurgeSpec(query=MessageQuery(subject="Lunch?"), mode="soft"),
                              [ALICE]).run()
        assert report.ok and report.totals["removed"] == 1
        mailops.delete(ctx.graph, ALICE, alert["id"], mode="hard")
        operations.renew(ctx.graph, redis_client, operations.registry.load(redis_client, sub.id))
        operations.reauthorize(ctx.graph, redis_client, sub.id)
        operations.delete(ctx.graph, redis_client, sub.id)
    finally:
        sink.stop()

    # Every Graph request, the worker's included: documented path, query options, $select names and Prefer.
    graph_calls = [r for r in emulator.request_log if r["path"].startswith("/v1.0/")
                   and not r["path"].endswith(phish["id"])]  # all but this test's own probe of the dead id
    assert len(graph_calls) > 20
    problems = [p for r in graph_calls for p in _problems(r["method"], r["path"][len("/v1.0"):], r["query"], r["prefer"])]
    assert not problems, "\n".join(problems)
    # Immutable ids were asked for on every Graph request (the header applies only to the request it is on).
    assert [r for r in graph_calls if "IdType" not in (r["prefer"] or "")] == []

    # On the wire: only documented headers, and bodies that name only documented properties.
    to_graph = [r for r in wire if r.url.startswith(emulator.graph_url)]  # not MSAL's token requests
    assert len(to_graph) > 10
    for request in to_graph:
        assert {h.lower() for h in request.headers} <= documented.HEADERS, request.headers.keys()
        path = unquote(request.path_url.split("?")[0][len("/v1.0"):])  # as sent, before the emulator's routing
        assert documented.route(request.method, path), f"{request.method} {path} is not a documented path"
        if not request.body:
            continue
        page, names = documented.route(request.method, path)
        body = json.loads(request.body)
        parts = body["requests"] if path == "/$batch" else [body]
        for part in parts:
            if path == "/$batch":
                assert preferences.IMMUTABLE_ID in part["headers"]["Prefer"]  # a batch's headers do not reach its parts
                continue
            assert set(part) <= names, f"{request.method} {path}: {set(part) - names} not in {page}"
