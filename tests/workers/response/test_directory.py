"""Whether addresses are users of a tenant, asked with that tenant's token (what a purge checks first)."""

from __future__ import annotations

from workers import runtime
from workers.response.search import outside_directory

CAROL = "carol@fabrikam.com"


def _contoso_graph(two_tenants, emulator, redis_client, count: int):
    staff = [f"staff{i:02d}@contoso.com" for i in range(count)]
    for address in staff:
        emulator.add_user(address)
    return runtime.build(two_tenants.settings, redis_client).for_tenant("contoso").graph, staff


def test_a_short_list_is_looked_up_one_by_one(two_tenants, emulator, redis_client):
    graph, staff = _contoso_graph(two_tenants, emulator, redis_client, 3)
    emulator.request_log.clear()

    outside = outside_directory(graph, ["alice@contoso.com", CAROL, *staff, "typo@contoso.com"])

    assert outside == {CAROL: "not in this tenant's directory", "typo@contoso.com": "not in this tenant's directory"}
    assert len(emulator.requests(method="GET", path="/v1.0/users/")) == 6
    assert {r["tenant"] for r in emulator.request_log if r["path"].startswith("/v1.0/")} == {two_tenants.a.tenant_id}


def test_a_long_list_is_matched_against_the_tenants_users_first(two_tenants, emulator, redis_client):
    graph, staff = _contoso_graph(two_tenants, emulator, redis_client, 24)  # 25 users: two pages of 20
    emulator.request_log.clear()

    outside = outside_directory(graph, [*staff, "Alice@Contoso.com", CAROL], page_size=20)

    assert outside == {CAROL: "not in this tenant's directory"}
    one_by_one = [r["path"] for r in emulator.requests(method="GET", path="/v1.0/users/")]
    assert one_by_one == [f"/v1.0/users/{CAROL}"]  # the staff and alice were found in the list
    assert len([r for r in emulator.requests(method="GET") if r["path"] == "/v1.0/users"]) == 2


def test_a_big_tenant_is_not_read_to_the_end_for_a_few_addresses(two_tenants, emulator, redis_client):
    graph, staff = _contoso_graph(two_tenants, emulator, redis_client, 99)  # 100 users: five pages of 20
    emulator.request_log.clear()

    outside = outside_directory(graph, [*staff[-20:], CAROL], page_size=20)  # 21 addresses: at most 2 pages

    assert outside == {CAROL: "not in this tenant's directory"}
    assert len([r for r in emulator.requests(method="GET") if r["path"] == "/v1.0/users"]) == 2
