"""``graphhook check`` with ``tenants:``: each tenant's token, roles and one mailbox, against the emulator serving two."""

from __future__ import annotations

from graphhook.commands.check import run_checks


def _env(two_tenants, emulator, redis_server, receiver):
    return {**emulator.environment(), "REDIS_URL": redis_server.url, "PUBLIC_URL": receiver.url,
            "GRAPHHOOK_CONFIG": str(two_tenants.path)}


def _item(report, name):
    found = [r for r in report.results if r.name == name]
    assert found, f"no check named {name!r} in:\n{report.render()}"
    return found[0]


def test_every_tenant_is_checked_token_roles_and_a_mailbox(two_tenants, emulator, redis_server, receiver):
    report = run_checks(_env(two_tenants, emulator, redis_server, receiver))

    assert not report.failed, report.render()
    assert "(2 tenant(s), 2 mailbox(es), 0 rule(s))" in _item(report, "configuration").detail
    for name, mailbox in (("contoso", "alice@contoso.com"), ("fabrikam", "carol@fabrikam.com")):
        assert _item(report, f"token {name}").status == "ok"
        assert _item(report, f"{name}: permission Mail.Read").status == "ok"
        assert mailbox in _item(report, f"mailbox {name}").detail
    assert emulator.client_secret not in report.render()


def test_a_tenant_without_consent_is_named_with_the_admin_consent_link(two_tenants, emulator, redis_server, receiver):
    emulator.revoke_consent(emulator.app_registration, two_tenants.b)

    report = run_checks(_env(two_tenants, emulator, redis_server, receiver), skip=["public-url"])

    assert report.failed
    token = _item(report, "token fabrikam")
    tid, cid = two_tenants.b.tenant_id, emulator.client_id
    assert token.status == "fail"
    assert token.detail == (f"app {cid} is not consented in tenant fabrikam ({tid}) — an admin must grant consent: "
                            f"{emulator.environment()['AZURE_AUTHORITY_HOST']}/{tid}/adminconsent?client_id={cid}")
    assert not [r for r in report.results if r.name.startswith("fabrikam:") or r.name == "mailbox fabrikam"]
    # The other tenant is checked as before.
    assert _item(report, "token contoso").status == "ok" and _item(report, "mailbox contoso").status == "ok"


def test_a_mailbox_of_another_tenant_is_reported_not_found(two_tenants, emulator, redis_server, receiver):
    two_tenants.path.write_text(
        f"version: 1\ntenants:\n  contoso:\n    tenant_id: {two_tenants.a.tenant_id}\n    mailboxes: [carol@fabrikam.com]\n")

    report = run_checks(_env(two_tenants, emulator, redis_server, receiver), skip=["public-url"])

    mailbox = _item(report, "mailbox contoso")
    assert mailbox.status == "fail" and "carol@fabrikam.com was not found in tenant contoso" in mailbox.detail
    assert "another tenant" in mailbox.fix


def test_a_wrong_secret_of_a_customers_app_names_that_tenant(two_tenants, emulator, redis_server, receiver):
    own = two_tenants.b.add_app()
    wrong = "8f3c2a1e-0b7d-4c55-9e61-2f4a9d0c7b13"  # a Secret ID, pasted instead of the value
    two_tenants.write(top=f"apps:\n  fabrikam-app: {{client_id: {own.client_id}, secret_env: FABRIKAM_APP_SECRET}}\n",
                      fabrikam="    app: fabrikam-app\n")

    report = run_checks({**_env(two_tenants, emulator, redis_server, receiver), "FABRIKAM_APP_SECRET": wrong},
                        skip=["public-url"])

    token = _item(report, "token fabrikam")
    assert token.status == "fail" and "AADSTS7000215" in token.detail
    assert "the secret of tenant fabrikam's app" in token.fix and "secret_env" in token.fix
    assert wrong not in report.render()
    assert _item(report, "token contoso").status == "ok"
