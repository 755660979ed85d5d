"""Realistic starter mail for ``graphhook emulator``: a few mailboxes, ordinary mail and one phishing sample."""

from __future__ import annotations

from typing import Any

PHISHING_HTML = (
    '<html><body><p>Your mailbox is almost full. '
    '<a href="http://login-micros0ft-support.example.net/reset">https://portal.office.com/storage</a> '
    "to keep receiving mail.</p></body></html>"
)

PHISHING: dict[str, Any] = {
    "subject": "Action required: mailbox storage limit reached",
    "from": {"name": "Microsoft 365 Admin", "address": "no-reply@micros0ft-support.example.net"},
    "html": PHISHING_HTML,
    "importance": "high",
    "headers": {
        "Authentication-Results": (
            "spf=fail (sender IP is 203.0.113.7) smtp.mailfrom=micros0ft-support.example.net; "
            "dkim=fail (signature did not verify) header.d=micros0ft-support.example.net; "
            "dmarc=fail action=quarantine header.from=micros0ft-support.example.net;"
        ),
        "Received-SPF": "Fail (protection.outlook.com: domain of micros0ft-support.example.net does not designate 203.0.113.7 as permitted sender)",
        "X-MS-Exchange-Organization-SCL": "5",
    },
    "attachments": [{
        "kind": "file", "name": "Storage_Upgrade.html", "contentType": "text/html",
        "content": b'<html><form action="http://login-micros0ft-support.example.net/collect"><input name="pw"></form></html>',
    }],
}

ORDINARY: list[dict[str, Any]] = [
    {"subject": "Quarterly report draft", "from": {"name": "Bob Jones", "address": "bob@contoso.com"},
     "body": "Hi Alice, the Q3 draft is attached.", "headers": {"Authentication-Results": "spf=pass; dkim=pass; dmarc=pass"},
     "attachments": [{"kind": "file", "name": "q3.csv", "contentType": "text/csv", "content": b"region,revenue\nEU,120\n"}]},
    {"subject": "Lunch on Friday?", "from": {"name": "Carol White", "address": "carol@fabrikam.com"},
     "body": "Are you free for lunch on Friday?"},
]

ORDINARY += [
    {"subject": "Signed contract", "from": {"name": "Dana Legal", "address": "dana@contoso.com"},
     "body": "The countersigned contract is on OneDrive; the original request is attached.",
     "headers": {"Authentication-Results": "spf=pass; dkim=pass; dmarc=pass"},
     "attachments": [
         {"kind": "reference", "name": "Contract.docx", "sourceUrl": "https://contoso.sharepoint.com/Contract.docx"},
         {"kind": "item", "name": "Original request", "item": {"subject": "Contract request", "from": "erin@fabrikam.com",
                                                              "body": "Please sign by Friday."}},
     ]},
]

MAILBOXES = (("alice@contoso.com", "Alice Smith"), ("bob@contoso.com", "Bob Jones"),
             ("secops@contoso.com", "Security Operations"))


def seed(emulator: Any) -> None:
    """Create the sample mailboxes and put mail in them (no subscriptions exist yet).

    Alice gets ordinary mail, a reference and an item attachment, and the phishing sample (HTML attachment,
    failing SPF/DKIM/DMARC in ``Authentication-Results``); Bob received the same phish, which a purge across
    mailboxes should find by ``internetMessageId``; one older message sits in Alice's Archive.
    """
    for address, name in MAILBOXES:
        emulator.add_user(address, name)
    for spec in ORDINARY:
        emulator.mail.add_message("alice@contoso.com", spec)
    phish = {**PHISHING, "internetMessageId": "<storage-limit-7731@micros0ft-support.example.net>",
             "to": ["alice@contoso.com", "bob@contoso.com"]}
    emulator.mail.add_message("alice@contoso.com", phish)
    emulator.mail.add_message("bob@contoso.com", phish)
    emulator.mail.add_message("alice@contoso.com", {"subject": "2023 offsite photos", "from": "bob@contoso.com",
                                                    "body": "Photos from last year.",
                                                    "receivedDateTime": "2023-09-14T08:30:00Z"}, folder="archive")
