"""Delta query per folder: pages, deltaLink rounds, @removed, the receivedDateTime filter and 410 on eviction."""

from __future__ import annotations

ALICE = "alice@contoso.com"
DELTA = f"/users/{ALICE}/mailFolders/inbox/messages/delta"


def _walk(graph, url, pagesize=2, **kwargs):
    """Follow nextLinks; return (items, deltaLink, pages)."""
    extra = kwargs.pop("headers", {}).get("Prefer")
    headers = {"Prefer": f"odata.maxpagesize={pagesize}" + (f", {extra}" if extra else "")}
    items, pages = [], 0
    response = graph.get(url, headers=headers, **kwargs)
    while True:
        assert response.status_code == 200, response.text
        assert response.headers["Preference-Applied"] == f"odata.maxpagesize={pagesize}"
        body, pages = response.json(), pages + 1
        items += body["value"]
        if "@odata.deltaLink" in body:
            assert "@odata.nextLink" not in body
            return items, body["@odata.deltaLink"], pages
        assert "$skiptoken=" in body["@odata.nextLink"]
        response = graph.get(body["@odata.nextLink"], headers=headers)


def test_initial_round_pages_then_delta_link_returns_only_changes(emulator, graph):
    emulator.add_user(ALICE)
    old = [emulator.deliver(ALICE, {"subject": f"old {i}"}) for i in range(5)]
    emulator.deliver(ALICE, {"subject": "elsewhere"}, folder="archive")
    items, link, pages = _walk(graph, DELTA + "?$select=subject,isRead")
    assert pages == 3 and sorted(i["subject"] for i in items) == [f"old {i}" for i in range(5)]
    assert {k for k in items[0] if not k.startswith("@odata.")} == {"id", "subject", "isRead"}
    assert "$deltatoken=" in link

    unchanged, link, _ = _walk(graph, link)
    assert unchanged == []

    new = emulator.deliver(ALICE, {"subject": "new"})
    graph.patch(f"/users/{ALICE}/messages/{old[0]['id']}", json={"isRead": True})
    graph.delete(f"/users/{ALICE}/messages/{old[1]['id']}")
    moved = graph.post(f"/users/{ALICE}/messages/{old[2]['id']}/move", json={"destinationId": "archive"}).json()
    changes, link, _ = _walk(graph, link)
    full = {i["id"]: i for i in changes if "@removed" not in i}
    removed = {i["id"] for i in changes if "@removed" in i}
    assert set(full) == {new["id"], old[0]["id"]}
    assert full[old[0]["id"]]["isRead"] is True and {k for k in full[new["id"]] if not k.startswith("@odata.")} == {"id", "subject", "isRead"}
    assert removed == {old[1]["id"], old[2]["id"]}
    assert all(i["@removed"] == {"reason": "deleted"} for i in changes if "@removed" in i)
    assert moved["id"] not in full  # it arrived in archive, not in the inbox

    archive, _, _ = _walk(graph, f"/users/{ALICE}/mailFolders/archive/messages/delta")
    assert {i["subject"] for i in archive} == {"elsewhere", "old 2"}


def test_received_filter_is_the_only_filter_and_sticks_to_the_token(emulator, graph):
    emulator.add_user(ALICE)
    emulator.deliver(ALICE, {"subject": "ancient", "receivedDateTime": "2020-01-01T00:00:00Z"})
    emulator.deliver(ALICE, {"subject": "recent", "receivedDateTime": "2024-06-01T00:00:00Z"})
    items, link, _ = _walk(graph, DELTA + "?$filter=receivedDateTime ge 2024-01-01T00:00:00Z&$select=subject")
    assert [i["subject"] for i in items] == ["recent"]
    emulator.deliver(ALICE, {"subject": "also ancient", "receivedDateTime": "2019-01-01T00:00:00Z"})
    emulator.deliver(ALICE, {"subject": "newer", "receivedDateTime": "2024-07-01T00:00:00Z"})
    later, _, _ = _walk(graph, link)
    assert [i["subject"] for i in later] == ["newer"]
    refused = graph.get(DELTA + "?$filter=subject eq 'x'")
    assert refused.status_code == 400
    assert graph.get(DELTA + "?$orderby=subject").status_code == 400
    ordered, _, _ = _walk(graph, DELTA + "?$orderby=receivedDateTime desc&$select=receivedDateTime", pagesize=10)
    assert [i["receivedDateTime"] for i in ordered] == sorted((i["receivedDateTime"] for i in ordered), reverse=True)


def test_evicted_token_answers_410_sync_state_not_found(emulator, graph):
    emulator.add_user(ALICE)
    emulator.deliver(ALICE, {"subject": "one"})
    _, link, _ = _walk(graph, DELTA)
    assert emulator.evict_delta_tokens(link) == 1
    gone = graph.get(link)
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "SyncStateNotFound"
    assert gone.json()["error"]["message"].startswith("The sync state generation is not found")
    assert gone.headers["Location"].endswith("/messages/delta")
    items, _, _ = _walk(graph, gone.headers["Location"])  # a full resync works
    assert [i["subject"] for i in items] == ["one"]
    emulator.evict_delta_tokens()
    assert len(emulator.delta) == 0


def test_immutable_ids_in_delta(emulator, graph):
    emulator.add_user(ALICE)
    message = emulator.deliver(ALICE, {"subject": "stable"})
    prefer = {"Prefer": 'IdType="ImmutableId"'}
    items, link, _ = _walk(graph, DELTA, headers=prefer)
    immutable_id = items[0]["id"]
    assert immutable_id != message["id"]
    graph.post(f"/users/{ALICE}/messages/{immutable_id}/move", json={"destinationId": "archive"}, headers=prefer)
    changes, _, _ = _walk(graph, link, headers=prefer)
    assert changes == [{"@odata.type": "#microsoft.graph.message", "id": immutable_id, "@removed": {"reason": "deleted"}}]
