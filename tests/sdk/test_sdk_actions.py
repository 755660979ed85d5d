"""msgraph-sdk writes to the emulator: delta(), move, forward, reply, sendMail (PascalCase parameters), uploads."""

from __future__ import annotations

import asyncio
import io
import os

import httpx
import pytest

from tests.sdk.conftest import require_sdk

require_sdk()

from msgraph.generated.models.attachment_item import AttachmentItem  # noqa: E402
from msgraph.generated.models.attachment_type import AttachmentType  # noqa: E402
from msgraph.generated.models.body_type import BodyType  # noqa: E402
from msgraph.generated.models.email_address import EmailAddress  # noqa: E402
from msgraph.generated.models.file_attachment import FileAttachment  # noqa: E402
from msgraph.generated.models.item_body import ItemBody  # noqa: E402
from msgraph.generated.models.message import Message  # noqa: E402
from msgraph.generated.models.recipient import Recipient  # noqa: E402
from msgraph.generated.users.item.messages.item.attachments.create_upload_session.create_upload_session_post_request_body import (  # noqa: E402,E501
    CreateUploadSessionPostRequestBody,
)
from msgraph.generated.users.item.messages.item.forward.forward_post_request_body import ForwardPostRequestBody  # noqa: E402,E501
from msgraph.generated.users.item.messages.item.move.move_post_request_body import MovePostRequestBody  # noqa: E402
from msgraph.generated.users.item.messages.item.reply.reply_post_request_body import ReplyPostRequestBody  # noqa: E402
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody  # noqa: E402

ALICE, BOB = "alice@contoso.com", "bob@contoso.com"
MIB = 1024 * 1024


def _to(address: str) -> Recipient:
    return Recipient(email_address=EmailAddress(address=address))


@pytest.fixture
def mailbox(emulator):
    emulator.add_user(ALICE)
    emulator.add_user(BOB)
    return emulator.deliver(ALICE, {"subject": "Invoice 42", "from": "carol@fabrikam.com", "body": "Pay here."})


def test_folder_delta_through_the_sdk(sdk, emulator, mailbox):
    async def first_round(client):
        return await client.users.by_user_id(ALICE).mail_folders.by_mail_folder_id("inbox").messages.delta.get()

    first = sdk.run(first_round)
    assert [m.subject for m in first.value] == ["Invoice 42"] and first.odata_delta_link
    assert emulator.requests("GET", "/messages/delta()", 200)  # the form Kiota-generated SDKs send

    emulator.deliver(ALICE, {"subject": "Invoice 43"})

    async def next_round(client):
        delta = client.users.by_user_id(ALICE).mail_folders.by_mail_folder_id("inbox").messages.delta
        return await delta.with_url(first.odata_delta_link).get()

    assert [m.subject for m in sdk.run(next_round).value] == ["Invoice 43"]


def test_move_with_the_sdks_destination_id(sdk, emulator, mailbox):
    async def scenario(client):
        moved = await (client.users.by_user_id(ALICE).messages.by_message_id(mailbox["id"]).move
                       .post(MovePostRequestBody(destination_id="archive")))
        archive = await client.users.by_user_id(ALICE).mail_folders.by_mail_folder_id("archive").get()
        return moved, archive

    moved, archive = sdk.run(scenario)
    assert moved.subject == "Invoice 42" and moved.parent_folder_id == archive.id and moved.id != mailbox["id"]


def test_forward_and_reply_keep_the_sdks_comment(sdk, emulator, mailbox):
    async def scenario(client):
        item = client.users.by_user_id(ALICE).messages.by_message_id(mailbox["id"])
        await item.forward.post(ForwardPostRequestBody(comment="Phish, please block", to_recipients=[_to("soc@example.net")]))
        await item.reply.post(ReplyPostRequestBody(comment="We never pay by link."))

    sdk.run(scenario)
    forwarded, replied = emulator.outbound_mail
    assert forwarded["to"] == "soc@example.net" and forwarded["subject"] == "FW: Invoice 42"
    assert forwarded["message"]["body"]["content"].startswith("Phish, please block")
    assert replied["to"] == "carol@fabrikam.com" and replied["subject"] == "RE: Invoice 42"
    assert replied["message"]["body"]["content"].startswith("We never pay by link.")


def test_send_mail_with_the_sdks_message_and_save_flag(sdk, emulator, mailbox):
    async def scenario(client):
        message = Message(subject="Lunch?", body=ItemBody(content_type=BodyType.Text, content="12:30"),
                          to_recipients=[_to(BOB)])
        await client.users.by_user_id(ALICE).send_mail.post(SendMailPostRequestBody(message=message,
                                                                                     save_to_sent_items=False))
        inbox = await client.users.by_user_id(BOB).messages.get()
        sent = await client.users.by_user_id(ALICE).mail_folders.by_mail_folder_id("sentitems").messages.get()
        return inbox, sent

    inbox, sent = sdk.run(scenario)
    assert [(m.subject, m.body.content) for m in inbox.value] == [("Lunch?", "12:30")]
    assert sent.value == []  # SaveToSentItems: false was read


def _session_body(name: str, size: int) -> CreateUploadSessionPostRequestBody:
    return CreateUploadSessionPostRequestBody(attachment_item=AttachmentItem(
        attachment_type=AttachmentType.File, name=name, size=size, content_type="application/octet-stream"))


def test_upload_session_in_chunks(sdk, emulator, mailbox):
    data = os.urandom(5 * MIB + 123)
    token = sdk.token()

    async def scenario(client):
        messages = client.users.by_user_id(ALICE).messages
        draft = await messages.post(Message(subject="Report", to_recipients=[_to(BOB)]))
        session = await messages.by_message_id(draft.id).attachments.create_upload_session.post(
            _session_body("capture.bin", len(data)))
        async with httpx.AsyncClient() as http:  # the upload URL is pre-authenticated: plain PUTs
            refused = await http.put(session.upload_url, content=data[:MIB], headers={
                "Authorization": f"Bearer {token}", "Content-Range": f"bytes 0-{MIB - 1}/{len(data)}"})
            statuses = []
            for start in range(0, len(data), 2 * MIB):
                chunk = data[start:start + 2 * MIB]
                answer = await http.put(session.upload_url, content=chunk, headers={
                    "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{len(data)}"})
                statuses.append(answer.status_code)
        attachments = await messages.by_message_id(draft.id).attachments.get()
        return refused.status_code, statuses, attachments.value

    refused, statuses, attachments = sdk.run(scenario)
    assert refused == 401  # as Outlook: a bearer token on the upload URL is refused
    assert statuses == [200, 200, 201]
    (attachment,) = attachments
    assert isinstance(attachment, FileAttachment) and attachment.name == "capture.bin"
    assert attachment.content_bytes == data


@pytest.mark.xfail(strict=True, raises=ValueError, reason=(
    "msgraph-core's LargeFileUploadTask turns Outlook's documented nextExpectedRanges [\"{start}\"] into "
    "'{start}-' and fails on int(''): docs/emulator.md, 'Bugs in msgraph-sdk'"))
def test_large_file_upload_task(sdk, emulator, mailbox):
    from kiota_abstractions.authentication import AnonymousAuthenticationProvider
    from msgraph import GraphRequestAdapter
    from msgraph_core.tasks.large_file_upload import LargeFileUploadTask

    data = os.urandom(4 * MIB)

    async def scenario(client):
        messages = client.users.by_user_id(ALICE).messages
        draft = await messages.post(Message(subject="Report"))
        session = await messages.by_message_id(draft.id).attachments.create_upload_session.post(
            _session_body("big.bin", len(data)))
        # Without an anonymous adapter the task also sends the bearer token, which the upload URL refuses (401).
        anonymous = GraphRequestAdapter(AnonymousAuthenticationProvider())
        task = LargeFileUploadTask(session, anonymous, io.BytesIO(data), max_chunk_size=MIB)
        await asyncio.wait_for(task.upload(), timeout=60)
        return (await messages.by_message_id(draft.id).attachments.get()).value

    (attachment,) = sdk.run(scenario)
    assert attachment.content_bytes == data
