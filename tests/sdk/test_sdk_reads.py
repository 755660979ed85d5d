"""msgraph-sdk reads from the emulator: tokens, users, messages, paging, typed attachments, ``$select`` errors."""

from __future__ import annotations

import base64
import os

import pytest

from tests.sdk.conftest import require_sdk

require_sdk()

from azure.core.exceptions import ClientAuthenticationError  # noqa: E402
from kiota_abstractions.base_request_configuration import RequestConfiguration  # noqa: E402
from msgraph.generated.models.file_attachment import FileAttachment  # noqa: E402
from msgraph.generated.models.item_attachment import ItemAttachment  # noqa: E402
from msgraph.generated.models.message import Message  # noqa: E402
from msgraph.generated.models.o_data_errors.o_data_error import ODataError  # noqa: E402
from msgraph.generated.models.reference_attachment import ReferenceAttachment  # noqa: E402
from msgraph.generated.users.item.messages.item.attachments.item.attachment_item_request_builder import (  # noqa: E402
    AttachmentItemRequestBuilder,
)
from msgraph.generated.users.item.messages.item.message_item_request_builder import MessageItemRequestBuilder  # noqa: E402,E501
from msgraph.generated.users.item.messages.messages_request_builder import MessagesRequestBuilder  # noqa: E402
from msgraph.generated.users.users_request_builder import UsersRequestBuilder  # noqa: E402
from msgraph_core.tasks.page_iterator import PageIterator  # noqa: E402

ALICE = "alice@contoso.com"


def _messages_query(**options):
    return RequestConfiguration(query_parameters=MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(**options))


def _message_query(**options):
    return RequestConfiguration(
        query_parameters=MessageItemRequestBuilder.MessageItemRequestBuilderGetQueryParameters(**options))


async def _all(client, first):
    items = []
    iterator = PageIterator(first, client.request_adapter)  # pages parsed as the first page's type

    def keep(item):
        items.append(item)
        return True

    await iterator.iterate(keep)
    return items


def test_client_credentials_token_and_invalid_client(sdk, emulator):
    emulator.add_user(ALICE)

    async def users(client):
        return [u.mail for u in (await client.users.get()).value]

    assert sdk.run(users) == [ALICE]
    assert emulator.requests("POST", "/oauth2/v2.0/token", 200)

    with pytest.raises(ClientAuthenticationError) as failure:
        sdk.run(users, secret="not-the-secret")
    assert "invalid_client" in str(failure.value) and "AADSTS7000215" in str(failure.value)


def test_users_with_select_top_and_the_page_iterator(sdk, emulator):
    for n in range(25):
        emulator.add_user(f"user{n:02}@contoso.com")

    async def scenario(client):
        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(select=["id", "mail"], top=10)
        first = await client.users.get(RequestConfiguration(query_parameters=query))
        everyone = await _all(client, first)
        return first, everyone

    first, everyone = sdk.run(scenario)
    assert len(first.value) == 10 and first.odata_next_link
    assert sorted(u.mail for u in everyone) == [f"user{n:02}@contoso.com" for n in range(25)]
    assert everyone[0].display_name is None  # not selected, so not sent


def test_messages_with_select_top_and_the_page_iterator(sdk, emulator):
    emulator.add_user(ALICE)
    for n in range(23):
        emulator.deliver(ALICE, {"subject": f"Message {n}", "body": "hello"})

    async def scenario(client):
        first = await client.users.by_user_id(ALICE).messages.get(_messages_query(select=["subject"], top=5))
        return first, await _all(client, first)

    first, everything = sdk.run(scenario)
    assert len(first.value) == 5 and first.value[0].body is None
    assert sorted(m.subject for m in everything) == sorted(f"Message {n}" for n in range(23))


def test_expanded_attachments_deserialize_into_their_types_with_exact_bytes(sdk, emulator):
    emulator.add_user(ALICE)
    big = os.urandom(4 * 1024 * 1024)
    emulator.deliver(ALICE, {"subject": "Evidence", "attachments": [
        {"kind": "file", "name": "capture.pcap", "content": big},
        {"kind": "item", "name": "Reported phish", "item": {"subject": "Reset now", "from": "x@evil.example"}},
        {"kind": "reference", "name": "Shared.docx"},
    ]})

    async def scenario(client):
        page = await client.users.by_user_id(ALICE).messages.get(_messages_query(expand=["attachments"]))
        return page.value[0].attachments

    file, item, reference = sdk.run(scenario)
    assert isinstance(file, FileAttachment) and file.content_bytes == big and file.size == len(big)
    assert isinstance(item, ItemAttachment) and item.name == "Reported phish"
    assert isinstance(reference, ReferenceAttachment)


def test_an_expanded_item_attachment_is_a_message(sdk, emulator):
    emulator.add_user(ALICE)
    report = emulator.deliver(ALICE, {"subject": "FW: phish", "attachments": [{
        "kind": "item", "name": "phish", "item": {"subject": "Reset now", "from": "x@evil.example", "attachments": [
            {"kind": "file", "name": "form.html", "content": b"<form>"}]}}]})

    async def scenario(client):
        query = AttachmentItemRequestBuilder.AttachmentItemRequestBuilderGetQueryParameters(
            expand=["microsoft.graph.itemattachment/item"])
        return await (client.users.by_user_id(ALICE).messages.by_message_id(report["id"])
                      .attachments.by_attachment_id(report["attachments"][0]["id"])
                      .get(RequestConfiguration(query_parameters=query)))

    attachment = sdk.run(scenario)
    assert isinstance(attachment.item, Message)  # an OutlookItem before issue 22
    assert attachment.item.subject == "Reset now"
    (inner,) = attachment.item.attachments
    assert isinstance(inner, FileAttachment) and base64.b64decode(base64.b64encode(inner.content_bytes)) == b"<form>"


def test_headers_and_unique_body_come_only_when_selected(sdk, emulator):
    emulator.add_user(ALICE)
    message = emulator.deliver(ALICE, {"subject": "Hi", "body": "Body text",
                                       "headers": {"Authentication-Results": "spf=fail"}})

    async def scenario(client):
        item = client.users.by_user_id(ALICE).messages.by_message_id(message["id"])
        plain = await item.get()
        chosen = await item.get(_message_query(select=["subject", "internetMessageHeaders", "uniqueBody"]))
        return plain, chosen

    plain, chosen = sdk.run(scenario)
    assert plain.internet_message_headers is None and plain.unique_body is None and plain.body.content == "Body text"
    assert [(h.name, h.value) for h in chosen.internet_message_headers] == [("Authentication-Results", "spf=fail")]
    assert chosen.unique_body.content == "Body text" and chosen.body is None


def test_selecting_an_unknown_property_is_an_odata_error_naming_it(sdk, emulator):
    emulator.add_user(ALICE)

    async def message_select(client):
        await client.users.by_user_id(ALICE).messages.get(_messages_query(select=["subject", "notAProperty"]))

    async def user_select(client):
        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(select=["mail", "mailAddress"])
        await client.users.get(RequestConfiguration(query_parameters=query))

    with pytest.raises(ODataError) as failure:
        sdk.run(message_select)
    assert failure.value.response_status_code == 400
    assert failure.value.error.code == "RequestBroker--ParseUri"
    assert "'notAProperty'" in failure.value.error.message

    with pytest.raises(ODataError) as failure:
        sdk.run(user_select)
    assert failure.value.response_status_code == 400 and "'mailAddress'" in failure.value.error.message


def test_the_ca_bundle_can_be_given_to_httpx_instead_of_the_environment(sdk, emulator, monkeypatch):
    """The docs' second recipe: no SSL_CERT_FILE, the CA handed to httpx and azure-identity directly."""
    import asyncio
    import ssl

    import httpx
    from azure.identity.aio import ClientSecretCredential
    from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph_core import GraphClientFactory

    monkeypatch.delenv("SSL_CERT_FILE")
    emulator.add_user(ALICE)
    ca = str(emulator.ca_path)

    async def main():
        credential = ClientSecretCredential(emulator.tenant_id, emulator.client_id, emulator.client_secret,
                                            authority=emulator.url, connection_verify=ca)
        async with credential:
            http = GraphClientFactory.create_with_default_middleware(
                client=httpx.AsyncClient(verify=ssl.create_default_context(cafile=ca)))
            auth = AzureIdentityAuthenticationProvider(credential, scopes=["https://graph.microsoft.com/.default"])
            adapter = GraphRequestAdapter(auth, client=http)
            adapter.base_url = emulator.graph_url
            client = GraphServiceClient(request_adapter=adapter)
            return [u.mail for u in (await client.users.get()).value]

    assert asyncio.run(main()) == [ALICE]
