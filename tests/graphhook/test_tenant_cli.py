"""``--tenant`` on the command line with two tenants configured (docs/tenants.md): the clear refusal without
it, each tenant's mail read with its own token, and a purge that never crosses into another tenant."""

from __future__ import annotations

import json

import pytest

from graphhook.cli import main
from workers.response import mailops

ALICE, CAROL = "alice@contoso.com", "carol@fabrikam.com"
CAMPAIGN_ID = "<payroll-update@evil.example>"
CAMPAIGN = {"subject": "Payroll update required", "from": {"name": "HR", "address": "hr@evil.example"},
            "body": "Log in to keep your salary.", "internetMessageId": CAMPAIGN_ID}


@pytest.fixture
def cli(two_tenants, emulator, redis_server, monkeypatch, capsys):
    """``graphhook ARGV…`` in this process with GRAPHHOOK_CONFIG declaring contoso and fabrikam."""
    values = {**emulator.environment(), "REDIS_URL": redis_server.url, "GRAPHHOOK_CONFIG": str(two_tenants.path),
              "PUBLIC_URL": two_tenants.settings.public_url}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    mailops.forget_folders()

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    mailops.forget_folders()


def _graph_requests(emulator):
    return emulator.requests(path="/v1.0/")


def _in_mailbox(emulator, tenant, address):
    """The messages of ``address`` (in ``tenant``) as (folder, subject)."""
    user = tenant.user(address)
    return sorted((f.display_name, m["subject"]) for f in user.folders.values() for m in f.messages.values())


@pytest.mark.parametrize("argv", [
    ("mail", "search", "--mailbox", CAROL, "--subject-contains", "payroll"),
    ("mail", "get", "--mailbox", CAROL, "--id", "AAMkAGI2"),
    ("mail", "folders", "--mailbox", CAROL),
    ("purge", "--mailbox", CAROL, "--message-id", CAMPAIGN_ID, "--dry-run"),
    ("resync", "--mailbox", CAROL),
    ("subscriptions", "create", "--mailbox", CAROL),
    ("rules", "test", "--mailbox", CAROL, "--id", "AAMkAGI2"),
])
def test_without_tenant_two_configured_tenants_are_named_and_nothing_is_done(cli, emulator, argv):
    code, out, err = cli(*argv)

    assert code == 2 and out == ""
    assert "2 tenants are configured (contoso, fabrikam): say which one with --tenant NAME" in err
    assert _graph_requests(emulator) == []


def test_an_unknown_tenant_is_refused_naming_the_configured_ones(cli, emulator):
    code, out, err = cli("mail", "search", "--tenant", "northwind", "--mailbox", CAROL, "--subject", "x")

    assert code == 2 and out == ""
    assert "no tenant is named 'northwind' (configured: contoso, fabrikam)" in err
    assert _graph_requests(emulator) == []


def test_mail_search_and_get_with_tenant_fabrikam_read_carols_mail_with_fabrikams_token(cli, emulator, two_tenants):
    emulator.mail.add_message(CAROL, CAMPAIGN)
    emulator.mail.add_message(ALICE, CAMPAIGN)

    code, out, err = cli("mail", "search", "--tenant", "fabrikam", "--mailbox", CAROL, "--message-id", CAMPAIGN_ID,
                         "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["mailbox"] == CAROL and row["subject"] == CAMPAIGN["subject"]
    code, out, err = cli("mail", "get", "--tenant", "fabrikam", "--mailbox", CAROL, "--id", row["id"], "--json")
    assert code == 0, err
    assert json.loads(out)["internetMessageId"] == CAMPAIGN_ID
    assert {r["tenant"] for r in _graph_requests(emulator)} == {two_tenants.b.tenant_id}

    # The same mailbox asked for in contoso is not there: contoso's token cannot see fabrikam's directory.
    code, out, err = cli("mail", "search", "--tenant", "contoso", "--mailbox", CAROL, "--message-id", CAMPAIGN_ID,
                         "--json")
    assert code == 1 and json.loads(out) == []
    assert f"{CAROL}: not searched: 404" in err


def test_purge_for_contoso_naming_a_fabrikam_mailbox_is_refused_before_anything(cli, emulator, two_tenants,
                                                                                redis_client):
    emulator.mail.add_message(ALICE, CAMPAIGN)
    emulator.mail.add_message(CAROL, CAMPAIGN)
    before = {ALICE: _in_mailbox(emulator, two_tenants.a, ALICE), CAROL: _in_mailbox(emulator, two_tenants.b, CAROL)}
    emulator.request_log.clear()

    code, out, err = cli("purge", "--tenant", "contoso", "--mailbox", f"{ALICE}, {CAROL}", "--message-id",
                         CAMPAIGN_ID, "--hard", "--yes")

    assert code == 2 and out == ""
    assert "purge refused: 1 of the mailboxes are not in tenant 'contoso'" in err
    assert f"{CAROL}: not in this tenant's directory" in err and f"{ALICE}:" not in err
    # Nothing searched or removed anywhere; the only request naming carol was contoso's directory lookup.
    carol_id = two_tenants.b.user(CAROL).id.lower()
    log = list(emulator.request_log)
    assert not [r for r in log if carol_id in r["path"].lower()]
    assert not [r for r in log if r["tenant"] == two_tenants.b.tenant_id or two_tenants.b.tenant_id in r["path"]]
    assert [(r["method"], r["status"]) for r in log if CAROL in r["path"]] == [("GET", 404)]
    assert not [r for r in log if "/messages" in r["path"] or r["method"] == "DELETE"]
    assert {ALICE: _in_mailbox(emulator, two_tenants.a, ALICE),
            CAROL: _in_mailbox(emulator, two_tenants.b, CAROL)} == before
    assert redis_client.keys("graphhook:*purge*") == []


def test_a_tenants_purge_removes_its_mail_and_keeps_its_state_apart(cli, emulator, two_tenants, redis_client):
    emulator.mail.add_message(ALICE, CAMPAIGN)
    emulator.mail.add_message(CAROL, CAMPAIGN)

    code, out, err = cli("purge", "--tenant", "fabrikam", "--mailbox", CAROL, "--message-id", CAMPAIGN_ID,
                         "--yes", "--json")

    assert code == 0, err
    report = json.loads(out)
    assert report["tenant"] == "fabrikam" and report["totals"]["removed"] == 1
    assert f"graphhook purge --resume {report['purge_id']} --tenant fabrikam" in err
    assert _in_mailbox(emulator, two_tenants.b, CAROL) == [("Deleted Items", CAMPAIGN["subject"])]
    assert _in_mailbox(emulator, two_tenants.a, ALICE) == [("Inbox", CAMPAIGN["subject"])]  # contoso's untouched
    # Its state is fabrikam's: contoso cannot resume (or read) it, fabrikam can.
    assert redis_client.keys("graphhook:purge*") == []
    assert redis_client.keys(f"graphhook:t:fabrikam:purge:{report['purge_id']}*")
    code, _, err = cli("purge", "--tenant", "contoso", "--resume", report["purge_id"])
    assert code == 2 and f"no purge {report['purge_id']!r} of tenant 'contoso'" in err
    code, out, err = cli("purge", "--tenant", "fabrikam", "--resume", report["purge_id"], "--json")
    assert code == 0, err
    assert json.loads(out)["totals"]["removed"] == 1


def test_purge_of_all_mailboxes_lists_only_the_tenants_users(cli, emulator, two_tenants):
    emulator.mail.add_message(ALICE, CAMPAIGN)
    emulator.mail.add_message(CAROL, CAMPAIGN)

    code, out, err = cli("purge", "--tenant", "fabrikam", "--all-mailboxes", "--message-id", CAMPAIGN_ID,
                         "--dry-run", "--json")

    assert code == 0, err
    report = json.loads(out)
    assert [m["mailbox"] for m in report["mailboxes"]] == [CAROL]
    assert [m["mailbox"] for m in report["messages"]] == [CAROL]
    assert {r["tenant"] for r in _graph_requests(emulator)} == {two_tenants.b.tenant_id}


def test_subscriptions_are_made_listed_and_deleted_per_tenant(cli, emulator, two_tenants):
    code, out, err = cli("subscriptions", "create", "--tenant", "contoso", "--mailbox", CAROL, "--json")
    assert code == 2 and "not under tenant 'contoso''s 'mailboxes'" in err  # carol is fabrikam's
    for tenant, address in (("contoso", ALICE), ("fabrikam", CAROL)):
        code, out, err = cli("subscriptions", "create", "--tenant", tenant, "--mailbox", address, "--json")
        assert code == 0, err
        assert json.loads(out)["tenant"] == tenant

    code, out, err = cli("subscriptions", "list", "--table")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["TENANT", "ID", "MAILBOX"]
    assert sorted(line.split()[0] + " " + line.split()[2] for line in lines[1:]) == [
        f"contoso {ALICE}", f"fabrikam {CAROL}"]
    code, out, err = cli("subscriptions", "list", "--tenant", "fabrikam", "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["tenant"] == "fabrikam" and row["mailbox"] == CAROL and row["state"] == "active"

    code, out, err = cli("subscriptions", "delete", "--tenant", "contoso", "--id", row["id"])
    assert code == 2 and "belongs to tenant 'fabrikam', not 'contoso'" in err
    assert row["id"] in emulator.subscriptions.items
    code, out, err = cli("subscriptions", "delete", "--tenant", "fabrikam", "--id", row["id"])
    assert code == 0, err
    assert row["id"] not in emulator.subscriptions.items and len(emulator.subscriptions.items) == 1


def test_rules_test_with_a_tenant_reads_its_mailbox_and_evaluates_only_its_rules(cli, emulator, two_tenants):
    two_tenants.write(rules="  - name: contoso-payroll\n    when: {subject: payroll}\n    actions: []\n"
                            "  - name: fabrikam-payroll\n    when: {subject: payroll}\n    actions: []\n",
                      contoso="    rules: [contoso-payroll]\n", fabrikam="    rules: [fabrikam-payroll]\n")
    _, _, message = emulator.mail.add_message(CAROL, CAMPAIGN)

    code, out, err = cli("rules", "test", "--tenant", "fabrikam", "--mailbox", CAROL, "--id", message["id"], "--json")

    assert code == 0, err
    result = json.loads(out)
    assert result["matched"] == ["fabrikam-payroll"] and [r["name"] for r in result["rules"]] == ["fabrikam-payroll"]
    assert {r["tenant"] for r in _graph_requests(emulator)} == {two_tenants.b.tenant_id}


def test_resync_with_a_tenant_reads_its_mailbox_with_its_token(cli, emulator, two_tenants):
    emulator.mail.add_message(CAROL, CAMPAIGN)

    code, out, err = cli("resync", "--tenant", "fabrikam", "--mailbox", CAROL, "--since", "1d", "--json")

    assert code == 0, err
    result = json.loads(out)
    assert result["tenant"] == "fabrikam" and result["mailbox"] == CAROL and result["seen"] == 1
    assert {r["tenant"] for r in _graph_requests(emulator)} == {two_tenants.b.tenant_id}


def test_a_tenant_whose_consent_was_revoked_does_not_hide_the_others_subscriptions(cli, emulator, two_tenants):
    for tenant, address in (("contoso", ALICE), ("fabrikam", CAROL)):
        assert cli("subscriptions", "create", "--tenant", tenant, "--mailbox", address, "--json")[0] == 0
    emulator.revoke_consent(emulator.app_registration, two_tenants.b)

    code, out, err = cli("subscriptions", "list", "--json")

    assert code == 0, err
    states = {row["tenant"]: row["state"] for row in json.loads(out)}
    assert states == {"contoso": "active", "fabrikam": "unchecked"}
    assert "tenant fabrikam: Graph's subscriptions could not be listed" in err


def test_a_tenant_named_default_never_acts_in_the_environments_directory(cli, emulator, two_tenants):
    """``default`` is the name of the environment's tenant: one declared under tenants: with another directory
    must not be served with AZURE_TENANT_ID's token."""
    text = two_tenants.path.read_text().replace("  fabrikam:\n", "  default:\n")
    two_tenants.path.write_text(text)
    emulator.mail.add_message(ALICE, CAMPAIGN)

    code, out, err = cli("purge", "--tenant", "default", "--mailbox", ALICE, "--message-id", CAMPAIGN_ID, "--yes")

    assert code == 2 and out == ""
    assert "'default' names the tenant of a configuration without tenants:" in err  # refused as the file loads
    assert _graph_requests(emulator) == []
