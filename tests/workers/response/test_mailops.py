"""Mailbox operations against the real emulator over HTTPS, checked by what the mailbox owner would see."""

from __future__ import annotations

import pytest

from graphhook.core.errors import NotFoundError
from workers import runtime
from workers.response import mailops


@pytest.fixture
def graph(settings, redis_client, emulator):
    for address in ("alice@contoso.com", "bob@contoso.com", "secops@contoso.com"):
        emulator.add_user(address)
    mailops.forget_folders()
    ctx = runtime.build(settings, redis_client)
    yield ctx.graph
    mailops.forget_folders()


def folders(emulator, mailbox: str) -> dict[str, list[str]]:
    """Folder display name → subjects, as the mailbox owner would see (and admins, for hidden folders)."""
    user = emulator.mail.user(mailbox)
    return {f.display_name: sorted(m["subject"] for m in f.messages.values()) for f in user.folders.values() if f.messages}


def message(emulator, mailbox: str, message_id: str) -> dict:
    return emulator.mail.user(mailbox).find_message(message_id)[1]


def deliver(emulator, subject="Invoice overdue", sender="x@evil.example", to="alice@contoso.com"):
    return emulator.deliver(to, {"subject": subject, "from": {"name": "X", "address": sender}, "body": "Pay now."})


def test_move_creates_missing_nested_folder_once_and_returns_new_id(graph, emulator):
    first, second = deliver(emulator, "one"), deliver(emulator, "two")
    new_id = mailops.move(graph, "alice@contoso.com", first["id"], "Inbox/Phish/2026")
    assert new_id != first["id"]
    mailops.forget_folders()  # look the folder up again rather than from the cache
    mailops.move(graph, "alice@contoso.com", second["id"], "inbox/phish/2026")
    seen = folders(emulator, "alice@contoso.com")
    assert seen["2026"] == ["one", "two"] and "Inbox" not in seen
    user = emulator.mail.user("alice@contoso.com")
    assert [f.display_name for f in user.folders.values()].count("Phish") == 1
    assert message(emulator, "alice@contoso.com", new_id)["subject"] == "one"


def test_move_without_create_refuses_missing_folder(graph, emulator):
    m = deliver(emulator)
    with pytest.raises(NotFoundError, match="'Nowhere' does not exist"):
        mailops.move(graph, "alice@contoso.com", m["id"], "Nowhere", create=False)
    assert folders(emulator, "alice@contoso.com") == {"Inbox": ["Invoice overdue"]}


def test_copy_keeps_original(graph, emulator):
    m = deliver(emulator)
    copy_id = mailops.copy(graph, "alice@contoso.com", m["id"], "Evidence")
    assert copy_id != m["id"]
    assert folders(emulator, "alice@contoso.com") == {"Inbox": ["Invoice overdue"], "Evidence": ["Invoice overdue"]}


def test_forward_with_comment_is_delivered_to_recipient(graph, emulator):
    m = deliver(emulator)
    mailops.forward(graph, "alice@contoso.com", m["id"], ["secops@contoso.com"], "Suspicious, please look.")
    inbox = emulator.mail.user("secops@contoso.com").folder("inbox").messages.values()
    [forwarded] = list(inbox)
    assert forwarded["subject"] == "FW: Invoice overdue"
    assert "Suspicious, please look." in forwarded["body"]["content"]
    assert folders(emulator, "alice@contoso.com")["Sent Items"] == ["FW: Invoice overdue"]


def test_reply_reaches_sender(graph, emulator):
    m = deliver(emulator, sender="bob@contoso.com")
    mailops.reply(graph, "alice@contoso.com", m["id"], "We never send invoices like this.")
    assert folders(emulator, "bob@contoso.com")["Inbox"] == ["RE: Invoice overdue"]


@pytest.mark.parametrize("mode, visible_folder, hidden_folder", [
    ("soft", "Deleted Items", None), ("hard", None, "Deletions"), ("purge", None, None)])
def test_delete_modes(graph, emulator, mode, visible_folder, hidden_folder):
    m = deliver(emulator)
    result = mailops.delete(graph, "alice@contoso.com", m["id"], mode=mode)
    seen = folders(emulator, "alice@contoso.com")
    assert "Inbox" not in seen
    if visible_folder:
        assert seen[visible_folder] == ["Invoice overdue"] and result
    else:
        user = emulator.mail.user("alice@contoso.com")
        assert not user.visible_messages()
        # hard: kept in Recoverable Items (Deletions) for the retention period; purge: gone from the store
        assert seen == ({hidden_folder: ["Invoice overdue"]} if hidden_folder else {})
        mailops.delete(graph, "alice@contoso.com", m["id"], mode=mode)  # already gone: not an error


def test_mark_read_unread_categorise_and_flag(graph, emulator):
    m = deliver(emulator)
    mailops.mark_read(graph, "alice@contoso.com", m["id"])
    assert message(emulator, "alice@contoso.com", m["id"])["isRead"] is True
    mailops.mark_read(graph, "alice@contoso.com", m["id"], read=False)
    assert message(emulator, "alice@contoso.com", m["id"])["isRead"] is False
    assert mailops.categorise(graph, "alice@contoso.com", m["id"], ["Blue"]) == ["Blue"]
    assert mailops.categorise(graph, "alice@contoso.com", m["id"], ["Phishing", "Blue"]) == ["Blue", "Phishing"]
    assert message(emulator, "alice@contoso.com", m["id"])["categories"] == ["Blue", "Phishing"]
    mailops.flag(graph, "alice@contoso.com", m["id"], "complete")
    assert message(emulator, "alice@contoso.com", m["id"])["flag"]["flagStatus"] == "complete"


def test_send_mail_delivers_and_keeps_sent_copy(graph, emulator):
    mailops.send_mail(graph, "secops@contoso.com", ["alice@contoso.com"], "Heads up", "A phish was quarantined.")
    [received] = emulator.mail.user("alice@contoso.com").folder("inbox").messages.values()
    assert received["subject"] == "Heads up" and "quarantined" in received["body"]["content"]
    assert received["from"]["emailAddress"]["address"] == "secops@contoso.com"
    assert folders(emulator, "secops@contoso.com")["Sent Items"] == ["Heads up"]


def test_find_by_internet_message_id(graph, emulator):
    m = deliver(emulator)
    new_id = mailops.move(graph, "alice@contoso.com", m["id"], "Quarantine")
    imid = message(emulator, "alice@contoso.com", new_id)["internetMessageId"]
    assert [x["id"] for x in mailops.find_by_internet_message_id(graph, "alice@contoso.com", imid)] == [new_id]
    assert mailops.find_by_internet_message_id(graph, "alice@contoso.com", imid, folder="inbox") == []


def test_move_recreates_a_folder_deleted_since_it_was_cached(graph, emulator):
    first, second = deliver(emulator, "one"), deliver(emulator, "two")
    mailops.move(graph, "alice@contoso.com", first["id"], "Quarantine")
    user = emulator.mail.user("alice@contoso.com")
    with emulator.mail.lock:  # the user deletes the folder (and what is in it) in Outlook
        quarantine = next(f for f in user.folders.values() if f.display_name == "Quarantine")
        for message in list(quarantine.messages.values()):
            emulator.mail.purge(user, message)
        del user.folders[quarantine.id]
    mailops.move(graph, "alice@contoso.com", second["id"], "Quarantine")  # the cached id is stale
    assert folders(emulator, "alice@contoso.com") == {"Quarantine": ["two"]}
