"""Several tenants: tokens carry their tenant, a token of one tenant never reaches another's mail or
subscriptions, notifications name their tenant, revoking one tenant's consent stops only that tenant,
and the limits are counted per tenant. Tokens come from real MSAL over HTTPS."""

from __future__ import annotations

import base64

import jwt
import msal
import pytest
import requests
from cryptography.hazmat.primitives import serialization

from emulator import subscriptions as subs_module
from tests.emulator.conftest import GraphClient, subscribe
from tests.emulator.test_rich_notifications import _certificate

SCOPE = "https://graph.microsoft.com/.default"
ALICE, CAROL = "alice@contoso.com", "carol@fabrikam.com"
SECRET_WORDS = "fabrikam-merger-terms"  # only in Carol's mail: no answer to tenant A may contain it


def msal_token(emu, app, tenant) -> dict:
    """MSAL's answer for ``app`` in ``tenant`` (a fresh client: no cache shared between calls)."""
    client = msal.ConfidentialClientApplication(app.client_id, client_credential=app.secret,
                                                authority=f"{emu.url}/{tenant.tenant_id}", instance_discovery=False)
    return client.acquire_token_for_client(scopes=[SCOPE])


def client_for(emu, app, tenant) -> GraphClient:
    result = msal_token(emu, app, tenant)
    assert "access_token" in result, result
    return GraphClient(emu, token=result["access_token"])


@pytest.fixture
def world(emulator):
    """Tenant A (the emulator's first) with Alice, tenant B with Carol, one multi-tenant MSP app consented in both."""
    a, b = emulator.tenant(), emulator.add_tenant()
    msp = a.add_app(multi_tenant=True)
    emulator.consent(msp, b)
    a.add_user(ALICE, "Alice Smith")
    b.add_user(CAROL, "Carol Diaz")
    emulator.deliver(ALICE, {"subject": "Lunch", "from": "bob@contoso.com", "body": "At noon"})
    carol_mail = b.deliver(CAROL, {"subject": "Confidential", "from": "ceo@fabrikam.com", "body": SECRET_WORDS})
    return {"emu": emulator, "a": a, "b": b, "msp": msp, "carol_mail": carol_mail,
            "ga": client_for(emulator, msp, a), "gb": client_for(emulator, msp, b)}


def test_tokens_carry_their_tenant_and_only_consenting_tenants_issue_them(world):
    emu, a, b, msp = world["emu"], world["a"], world["b"], world["msp"]
    for tenant in (a, b):
        claims = jwt.decode(msal_token(emu, msp, tenant)["access_token"], options={"verify_signature": False})
        assert claims["tid"] == tenant.tenant_id and claims["iss"] == f"https://sts.windows.net/{tenant.tenant_id}/"
        assert claims["appid"] == msp.client_id and "Mail.Read" in claims["roles"]
    # One app per customer: B's own single-tenant app has no service principal in A.
    own = b.add_app()
    refused = msal_token(emu, own, a)
    assert refused["error"] == "unauthorized_client" and refused["error_codes"] == [700016]
    assert a.tenant_id in refused["error_description"]
    assert "access_token" in msal_token(emu, own, b)
    with pytest.raises(ValueError, match="single-tenant"):
        emu.consent(own, a)
    # The single-tenant API is the first tenant's.
    assert emu.environment()["AZURE_TENANT_ID"] == emu.tenant_id == a.tenant_id
    env_b = b.environment(msp)
    assert env_b["AZURE_TENANT_ID"] == b.tenant_id and env_b["AZURE_CLIENT_ID"] == msp.client_id
    assert env_b["GRAPH_URL"] == emu.graph_url
    with pytest.raises(ValueError, match="already has a mailbox"):
        b.add_user(ALICE)


def test_a_token_of_tenant_a_never_reads_tenant_b_mailboxes(world):
    emu, b, ga, gb = world["emu"], world["b"], world["ga"], world["gb"]
    carol, mail = b.user(CAROL), world["carol_mail"]
    assert [u["mail"] for u in ga.get("/users").json()["value"]] == [ALICE]
    assert [u["mail"] for u in gb.get("/users").json()["value"]] == [CAROL]
    answers = {
        "user": ga.get(f"/users/{carol.id}"),
        "user by address": ga.get(f"/users/{CAROL}"),
        "messages": ga.get(f"/users/{carol.id}/messages"),
        "user@tenant": ga.get(f"/users/{carol.id}@{b.tenant_id}/messages"),
        "message": ga.get(f"/users/{CAROL}/messages/{mail['id']}"),
        "folders": ga.get(f"/users/{carol.id}/mailFolders"),
        "delta": ga.get(f"/users/{carol.id}/mailFolders/inbox/messages/delta"),
        "mime": ga.get(f"/users/{carol.id}/messages/{mail['id']}/$value"),
        "move": ga.post(f"/users/{carol.id}/messages/{mail['id']}/move", json={"destinationId": "deleteditems"}),
        "delete": ga.delete(f"/users/{carol.id}/messages/{mail['id']}"),
        "send as": ga.post(f"/users/{CAROL}/sendMail", json={"message": {
            "subject": "x", "toRecipients": [{"emailAddress": {"address": ALICE}}]}}),
    }
    for what, response in answers.items():
        assert response.status_code == 404, (what, response.status_code, response.text)
        assert SECRET_WORDS not in response.text
    assert answers["messages"].json()["error"]["code"] == "ErrorInvalidUser"  # as for a user that does not exist
    assert answers["user"].json()["error"]["code"] == "Request_ResourceNotFound"
    # A message id of B's does not open in A's own mailbox either.
    assert ga.get(f"/users/{ALICE}/messages/{mail['id']}").status_code == 404
    batch = ga.post("/$batch", json={"requests": [{"id": "1", "method": "GET", "url": f"/users/{carol.id}/messages"}]})
    assert batch.json()["responses"][0]["status"] == 404 and SECRET_WORDS not in batch.text
    # Nothing was changed in B, and B's own token reads it.
    inbox = gb.get(f"/users/{carol.id}/mailFolders/inbox/messages?$select=body").json()["value"]
    assert [m["id"] for m in inbox] == [mail["id"]] and SECRET_WORDS in inbox[0]["body"]["content"]
    assert gb.get(f"/users/{ALICE}/messages").status_code == 404  # and B does not read A
    assert not [e for e in emu.events if e["event"] == "mail.sent"]


def test_a_subscription_of_tenant_a_on_tenant_b_mailbox_is_refused(world, sink):
    b, ga, gb = world["b"], world["ga"], world["gb"]
    carol = b.user(CAROL)
    body = {"changeType": "created", "notificationUrl": f"{sink.url}/notifications", "resource": f"users/{carol.id}/messages",
            "expirationDateTime": (world["emu"].clock.now().replace(microsecond=0)).isoformat(), "clientState": "s"}
    refused = ga.post("/subscriptions", json=body)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "ResourceNotFound"
    assert sink.handshakes == []  # refused before Graph would even validate the URL
    # B's subscription (same app) is invisible and untouchable with A's token.
    sub_b = subscribe(gb, sink, f"users/{carol.id}/messages")
    assert ga.get("/subscriptions").json()["value"] == []
    for response in (ga.get(f"/subscriptions/{sub_b['id']}"), ga.patch(f"/subscriptions/{sub_b['id']}", json={}),
                     ga.post(f"/subscriptions/{sub_b['id']}/reauthorize"), ga.delete(f"/subscriptions/{sub_b['id']}")):
        assert response.status_code == 404
    assert [s["id"] for s in gb.get("/subscriptions").json()["value"]] == [sub_b["id"]]


def test_notifications_and_validation_tokens_carry_their_subscription_tenant(world, sink):
    emu, a, b, ga, gb, msp = world["emu"], world["a"], world["b"], world["ga"], world["gb"], world["msp"]
    key, cert = _certificate()
    encoded = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    rich = {"includeResourceData": True, "encryptionCertificate": encoded, "encryptionCertificateId": "k1"}
    sub_a = subscribe(ga, sink, f"users/{a.user(ALICE).id}/messages?$select=subject", **rich)
    sub_b = subscribe(gb, sink, f"users/{b.user(CAROL).id}/messages?$select=subject", **rich)
    emu.deliver(ALICE, {"subject": "for A", "from": "x@example.com"})
    b.deliver(CAROL, {"subject": "for B", "from": "x@example.com"})
    items = sink.wait(lambda s: len(s.items()) >= 2 and s.items())
    tenant_of = {i["subscriptionId"]: i["tenantId"] for i in items}
    assert tenant_of == {sub_a["id"]: a.tenant_id, sub_b["id"]: b.tenant_id}
    assert items[0]["resource"].split("/")[1] in (a.user(ALICE).id, b.user(CAROL).id)
    tokens = [t for post in sink.posts if post["path"] == "/notifications" for t in post["body"].get("validationTokens", [])]
    tids = {jwt.decode(t, options={"verify_signature": False})["tid"] for t in tokens}
    assert tids == {a.tenant_id, b.tenant_id}
    for token in tokens:  # each verifies against the published keys, with its own tenant as issuer
        claims = jwt.decode(token, emu.directory.key.private.public_key(), algorithms=["RS256"], audience=msp.client_id,
                            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})
        assert claims["iss"] == f"https://sts.windows.net/{claims['tid']}/"
    emu.lifecycle(sub_b["id"], "missed")
    missed = sink.wait(lambda s: s.items("/lifecycle"))
    assert missed[0]["tenantId"] == b.tenant_id


def test_revoking_one_tenant_stops_it_while_the_other_goes_on(world, sink):
    emu, a, b, ga, gb, msp = world["emu"], world["a"], world["b"], world["ga"], world["gb"], world["msp"]
    sub_a = subscribe(ga, sink, f"users/{a.user(ALICE).id}/messages")
    sub_b = subscribe(gb, sink, f"users/{b.user(CAROL).id}/messages")
    assert emu.revoke_consent(msp, b) == 1
    refused = msal_token(emu, msp, b)
    assert refused["error"] == "unauthorized_client" and refused["error_codes"] == [700016]
    old = gb.get(f"/users/{CAROL}/messages")
    assert old.status_code == 403 and old.json()["error"]["code"] == "ErrorAccessDenied"
    assert gb.post(f"/subscriptions/{sub_b['id']}/reauthorize").status_code == 403
    notice = sink.wait(lambda s: s.items("/lifecycle"))
    assert [(n["subscriptionId"], n["tenantId"], n["lifecycleEvent"]) for n in notice] == [
        (sub_b["id"], b.tenant_id, "reauthorizationRequired")]
    # A goes on: new tokens, reads, notifications. B's mail is not announced.
    assert "access_token" in msal_token(emu, msp, a)
    assert ga.get(f"/users/{ALICE}/messages").status_code == 200
    b.deliver(CAROL, {"subject": "unseen", "from": "x@example.com"})
    emu.deliver(ALICE, {"subject": "seen", "from": "x@example.com"})
    sink.wait(lambda s: any(i["subscriptionId"] == sub_a["id"] for i in s.items()))
    assert all(i["subscriptionId"] != sub_b["id"] for i in sink.items())
    assert emu.subscriptions.items[sub_b["id"]].lost == 1
    # Consent again: a new token works, reauthorizing resumes B's notifications.
    emu.consent(msp, b)
    gb2 = client_for(emu, msp, b)
    assert gb2.post(f"/subscriptions/{sub_b['id']}/reauthorize").status_code == 204
    b.deliver(CAROL, {"subject": "seen again", "from": "x@example.com"})
    sink.wait(lambda s: any(i["subscriptionId"] == sub_b["id"] for i in s.items()))


def test_revocation_and_tenants_over_the_control_api(emulator):
    base, verify = f"{emulator.url}/_emulator", str(emulator.ca_path)
    created = requests.post(f"{base}/tenants", json={}, verify=verify)
    assert created.status_code == 201
    tid = created.json()["tenantId"]
    assert requests.post(f"{base}/tenants/{tid}/users", json={"address": CAROL}, verify=verify).status_code == 201
    assert requests.post(f"{base}/tenants/{tid}/users", json={"address": CAROL}, verify=verify).status_code == 201
    app = requests.post(f"{base}/tenants/{emulator.tenant_id}/apps", json={"multiTenant": True}, verify=verify).json()
    consent_url = f"{base}/tenants/{tid}/consents/{app['clientId']}"
    assert requests.put(consent_url, json={"roles": ["Mail.Read"]}, verify=verify).status_code == 200
    listed = {t["tenantId"]: t for t in requests.get(f"{base}/tenants", verify=verify).json()["value"]}
    assert listed[tid]["users"] == [CAROL]
    assert listed[tid]["consents"] == [{"clientId": app["clientId"], "roles": ["Mail.Read"]}]
    registration, tenant = emulator.directory.apps[app["clientId"]], emulator.tenant(tid)
    graph = client_for(emulator, registration, tenant)
    assert graph.get(f"/users/{CAROL}/messages").status_code == 200
    assert requests.delete(consent_url, verify=verify).json()["challenged"] == 0
    assert graph.get(f"/users/{CAROL}/messages").status_code == 403
    assert msal_token(emulator, registration, tenant)["error_codes"] == [700016]
    assert requests.post(f"{base}/tenants/nope/users", json={"address": "x@y.z"}, verify=verify).status_code == 404
    assert requests.post(f"{base}/users", json={"address": CAROL}, verify=verify).status_code == 409  # B's address


def test_subscription_writes_are_limited_per_app_per_tenant(world, sink):
    emu, a, b, ga, gb, msp = world["emu"], world["a"], world["b"], world["ga"], world["gb"], world["msp"]
    sub_a = subscribe(ga, sink, f"users/{a.user(ALICE).id}/messages")
    for _ in range(subs_module.WRITE_LIMIT - 1):  # the create above was A's first write
        assert emu.subscriptions.take_write(msp.client_id, tenant=a.tenant_id) is None
    refused = ga.patch(f"/subscriptions/{sub_a['id']}", json={})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    subscribe(gb, sink, f"users/{b.user(CAROL).id}/messages")  # the same app in B is not slowed
    # 2,000 writes per tenant, all apps together: a third app in A is refused once two apps used their 1,000.
    other = a.add_app()
    for _ in range(subs_module.WRITE_LIMIT):
        assert emu.subscriptions.take_write(other.client_id, tenant=a.tenant_id) is None
    third = a.add_app()
    assert emu.subscriptions.take_write(third.client_id, tenant=a.tenant_id) is not None
    assert emu.subscriptions.take_write(third.client_id, tenant=b.tenant_id) is None


def test_mailbox_limits_are_counted_per_tenant(world):
    emu, ga, gb = world["emu"], world["ga"], world["gb"]
    emu.throttle.configure(requests=3)
    for _ in range(3):
        assert ga.get(f"/users/{ALICE}/messages").status_code == 200
    assert ga.get(f"/users/{ALICE}/messages").status_code == 429
    assert gb.get(f"/users/{CAROL}/messages").status_code == 200
    tenants = requests.get(f"{emu.url}/_emulator/tenants", verify=str(emu.ca_path)).json()["value"]
    assert {t["tenantId"]: t["throttled"] for t in tenants} == {world["a"].tenant_id: 1, world["b"].tenant_id: 0}
