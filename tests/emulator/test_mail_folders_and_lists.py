"""Users, mail folders and message listing with OData options, as Graph serves them."""

from __future__ import annotations

import datetime as dt


def _seed(emulator, n: int = 0):
    emulator.add_user("alice@contoso.com", "Alice Smith")
    base = dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.timezone.utc)
    specs = [
        {"subject": "Invoice 42 overdue", "from": {"name": "Mallory", "address": "billing@evil.example"},
         "body": "Pay the invoice now", "receivedDateTime": "2024-05-01T09:00:00Z", "sentDateTime": "2024-05-01T09:00:00Z",
         "internetMessageId": "<inv42@evil.example>"},
        {"subject": "Lunch", "from": "carol@fabrikam.com", "body": "pizza on friday?",
         "receivedDateTime": "2024-05-02T09:00:00Z", "sentDateTime": "2024-05-02T09:00:00Z"},
        {"subject": "Re: Invoice 42 overdue", "from": {"name": "Bob", "address": "bob@contoso.com"},
         "body": "Looks like phishing", "receivedDateTime": "2024-05-03T09:00:00Z", "sentDateTime": "2024-05-03T09:00:00Z"},
    ]
    specs += [{"subject": f"Newsletter {i}", "from": "news@example.org", "body": "weekly",
               "receivedDateTime": (base + dt.timedelta(days=10 + i)).strftime("%Y-%m-%dT%H:%M:%SZ")} for i in range(n)]
    return [emulator.deliver("alice@contoso.com", s) for s in specs]


def test_users_are_paged_and_addressable_by_id_or_address(emulator, graph):
    for i in range(5):
        emulator.add_user(f"user{i}@contoso.com")
    page = graph.get("/users?$top=2").json()
    assert len(page["value"]) == 2 and "@odata.nextLink" in page
    everyone = graph.all_pages("/users?$top=2&$select=id,mail")
    assert sorted(u["mail"] for u in everyone) == [f"user{i}@contoso.com" for i in range(5)]
    assert set(everyone[0]) == {"id", "mail"}
    one = graph.get(f"/users/{everyone[0]['id']}").json()
    assert one["mail"] == everyone[0]["mail"]
    assert graph.get("/users/user3@contoso.com").json()["id"] in {u["id"] for u in everyone}
    assert graph.get("/users/nobody@contoso.com").status_code == 404
    assert graph.get("/users?$filter=mail eq 'user4@contoso.com'").json()["value"][0]["mail"] == "user4@contoso.com"


def test_me_is_refused_for_app_only_tokens(emulator, graph):
    response = graph.get("/me/messages")
    assert response.status_code == 400
    assert "delegated" in response.json()["error"]["message"]


def test_folders_well_known_names_children_and_conflicts(emulator, graph):
    emulator.add_user("alice@contoso.com")
    inbox = graph.get("/users/alice@contoso.com/mailFolders/inbox").json()
    assert inbox["displayName"] == "Inbox" and inbox["totalItemCount"] == 0
    assert graph.get(f"/users/alice@contoso.com/mailFolders/{inbox['id']}").json()["id"] == inbox["id"]

    created = graph.post("/users/alice@contoso.com/mailFolders/inbox/childFolders", json={"displayName": "Quarantine"})
    assert created.status_code == 201
    child = created.json()
    assert child["parentFolderId"] == inbox["id"]
    duplicate = graph.post("/users/alice@contoso.com/mailFolders/inbox/childFolders", json={"displayName": "quarantine"})
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "ErrorFolderExists"
    children = graph.get("/users/alice@contoso.com/mailFolders/inbox/childFolders").json()["value"]
    assert [c["displayName"] for c in children] == ["Quarantine"]
    assert graph.get("/users/alice@contoso.com/mailFolders/inbox").json()["childFolderCount"] == 1

    top = graph.post("/users/alice@contoso.com/mailFolders", json={"displayName": "Cases"})
    assert top.status_code == 201
    # Ten per page by default, as Graph pages mailFolders; hidden Recoverable Items never listed.
    first = graph.get("/users/alice@contoso.com/mailFolders").json()
    assert len(first["value"]) == 9 and "@odata.nextLink" not in first
    names = {f["displayName"] for f in graph.all_pages("/users/alice@contoso.com/mailFolders?$top=4")}
    assert {"Inbox", "Deleted Items", "Sent Items", "Cases"} <= names and "Deletions" not in names
    assert graph.get("/users/alice@contoso.com/mailFolders/nope").status_code == 404


def test_listing_pages_with_skip_and_selects(emulator, graph):
    _seed(emulator, n=12)
    first = graph.get("/users/alice@contoso.com/messages?$select=subject").json()
    assert len(first["value"]) == 10  # Outlook's default page size
    assert {k for k in first["value"][0] if not k.startswith("@odata.")} == {"id", "subject"}
    assert "$skip=10" in first["@odata.nextLink"]
    everything = graph.all_pages("/users/alice@contoso.com/mailFolders/inbox/messages?$top=5&$select=receivedDateTime")
    assert len(everything) == 15
    times = [m["receivedDateTime"] for m in everything]
    assert times == sorted(times, reverse=True)  # newest first
    counted = graph.get("/users/alice@contoso.com/messages?$count=true&$top=1").json()
    assert counted["@odata.count"] == 15 and len(counted["value"]) == 1


def test_filters_for_purge_and_search(emulator, graph):
    messages = _seed(emulator)
    path = "/users/alice@contoso.com/messages?$select=subject&$filter="

    def subjects(flt):
        response = graph.get(path + flt)
        assert response.status_code == 200, response.text
        return sorted(m["subject"] for m in response.json()["value"])

    assert subjects("internetMessageId eq '<inv42@evil.example>'") == ["Invoice 42 overdue"]
    assert subjects("from/emailAddress/address eq 'BILLING@evil.example'") == ["Invoice 42 overdue"]
    assert subjects("subject eq 'Lunch'") == ["Lunch"]
    assert subjects("contains(subject,'invoice')") == ["Invoice 42 overdue", "Re: Invoice 42 overdue"]
    assert subjects("receivedDateTime ge 2024-05-02T00:00:00Z and receivedDateTime lt 2024-05-03T00:00:00Z") == ["Lunch"]
    assert subjects("contains(subject,'invoice') and from/emailAddress/address eq 'bob@contoso.com'") == ["Re: Invoice 42 overdue"]
    assert subjects("toRecipients/any(r:r/emailAddress/address eq 'alice@contoso.com') and subject eq 'Lunch'") == ["Lunch"]
    bad = graph.get(path + "nosuchprop eq 1")
    assert bad.status_code == 400 and "nosuchprop" in bad.json()["error"]["message"]
    assert len(messages) == 3


def test_orderby_must_lead_the_filter(emulator, graph):
    _seed(emulator)
    ok = graph.get("/users/alice@contoso.com/messages?$filter=receivedDateTime ge 2024-01-01&$orderby=receivedDateTime desc")
    assert ok.status_code == 200 and len(ok.json()["value"]) == 3
    bad = graph.get("/users/alice@contoso.com/messages?$filter=subject eq 'Lunch'&$orderby=receivedDateTime desc")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InefficientFilter"
    asc = graph.get("/users/alice@contoso.com/messages?$orderby=receivedDateTime&$select=subject").json()["value"]
    assert asc[0]["subject"] == "Invoice 42 overdue"


def test_search_kql_and_its_restrictions(emulator, graph):
    _seed(emulator)
    base = "/users/alice@contoso.com/messages?$select=subject&$search="

    def found(query):
        response = graph.get(base + query)
        assert response.status_code == 200, response.text
        return [m["subject"] for m in response.json()["value"]]

    assert found('"invoice"') == ["Re: Invoice 42 overdue", "Invoice 42 overdue"]  # by sent time, newest first
    assert found('"pizza"') == ["Lunch"]  # body is a default search property
    assert found('"from:billing@evil.example"') == ["Invoice 42 overdue"]
    assert found('"subject:lunch"') == ["Lunch"]
    assert found('"subject:invoice from:bob"') == ["Re: Invoice 42 overdue"]
    assert found('"pizza OR phishing"') == ["Re: Invoice 42 overdue", "Lunch"]
    for clash in ("&$filter=subject eq 'Lunch'", "&$orderby=receivedDateTime desc"):
        response = graph.get(base + '"invoice"' + clash)
        assert response.status_code == 400
        assert "not supported with '$search'" in response.json()["error"]["message"]
    paged = graph.get(base + '"invoice"&$top=1').json()
    assert "$skiptoken=" in paged["@odata.nextLink"]
    assert len(graph.all_pages(base + '"invoice"&$top=1')) == 2
