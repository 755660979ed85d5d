"""Microsoft's own Graph SDK (msgraph-sdk + azure-identity) as an outside client of the emulator (issue 22).

Nothing here bends the SDK: it is configured as any developer would point it at another cloud — the
authority host, the Graph base URL and the CA bundle (``SSL_CERT_FILE`` for httpx, ``connection_verify`` for
azure-identity) —
and the emulator must answer what Microsoft's generated models expect. The SDK is an optional extra
(``pip install -e '.[sdk]'``, ``make test-sdk``); without it these tests are skipped, saying why.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest

from tests.emulator.conftest import Sink

SKIP = "msgraph-sdk / azure-identity are not installed: pip install -e '.[sdk]' (or run make test-sdk)"
SCOPES = ["https://graph.microsoft.com/.default"]  # without it the SDK asks for "https://{host}/.default"


def require_sdk() -> None:
    """Skip the calling test module, saying why, when the ``sdk`` extra is not installed."""
    pytest.importorskip("msgraph", reason=SKIP)
    pytest.importorskip("azure.identity", reason=SKIP)
    # msgraph-core's batch module imports 'deprecated' without declaring it; the extra installs it.
    pytest.importorskip("deprecated", reason=SKIP)


class Sdk:
    """Runs a coroutine against a ``GraphServiceClient`` configured for the emulator, one event loop per call."""

    def __init__(self, emu: Any) -> None:
        self.emu = emu
        self.secret = emu.client_secret

    def credential(self, secret: str | None = None) -> Any:
        from azure.identity.aio import ClientSecretCredential

        # authority= is the whole of the identity configuration: the host only, the tenant comes separately.
        # connection_verify= is the CA bundle for azure-core's aiohttp transport: aiohttp reads SSL_CERT_FILE
        # once, when it is first imported, so the environment cannot change it for a later emulator's CA.
        return ClientSecretCredential(self.emu.tenant_id, self.emu.client_id, secret or self.secret,
                                      authority=self.emu.url, connection_verify=str(self.emu.ca_path))

    def client(self, credential: Any) -> Any:
        from msgraph import GraphServiceClient

        client = GraphServiceClient(credential, scopes=SCOPES)
        client.request_adapter.base_url = self.emu.graph_url
        return client

    def token(self) -> str:
        """An access token from azure-identity, as the SDK would send it."""
        async def main() -> str:
            async with self.credential() as credential:
                return (await credential.get_token(*SCOPES)).token

        return asyncio.run(main())

    def run(self, scenario: Callable[[Any], Awaitable[Any]], secret: str | None = None) -> Any:
        """``scenario(client)`` on a fresh event loop; the credential's session is closed afterwards."""
        async def main() -> Any:
            async with self.credential(secret) as credential:
                return await scenario(self.client(credential))

        return asyncio.run(main())


@pytest.fixture
def sdk(emulator, monkeypatch) -> Sdk:
    monkeypatch.setenv("SSL_CERT_FILE", str(emulator.ca_path))  # the CA bundle, as httpx reads it for each client
    return Sdk(emulator)


@pytest.fixture
def sink(emulator):
    s = Sink(emulator)
    yield s
    s.server.stop()
