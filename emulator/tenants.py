"""Several tenants in one emulator: their mailboxes, app registrations and consents.

Microsoft's model (https://learn.microsoft.com/entra/identity-platform/app-objects-and-service-principals):
an app registration lives in one *home* tenant; it can call Graph in a tenant only where it has a
service principal there, created by admin consent, which also grants its application permissions
(``roles``). A multi-tenant app ("AzureADMultipleOrgs") is consented in each customer tenant; a
single-tenant app only in its home. Without a service principal the token endpoint answers
AADSTS700016 ("…was not found in the directory… not been installed by the administrator of the tenant
or consented to…"), which is also what an app gets after its consent was revoked.

Each tenant has its own users; a token's ``tid`` decides which users exist for the caller
(``graphapi.find_user``), which subscriptions it sees, the ``tenantId`` of their notifications and the
tenant of their validation tokens. Throttling keys carry the tenant: Outlook's per app and mailbox
limits, and the subscription writes per app per tenant.

The first tenant is the emulator's own (``emu.tenant_id``, ``emu.client_id``, ``emu.add_user``):
single-tenant code never meets this module.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from .identity import App
from .mailstore import User

AppRef = App | str  # an App or its client id


class Tenant:
    """One Entra tenant of the emulator: its id and its mailboxes; apps act in it by consent."""

    def __init__(self, emulator: Any, tenant_id: str) -> None:
        self.emulator = emulator
        self.tenant_id = tenant_id

    def __repr__(self) -> str:
        return f"Tenant({self.tenant_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tenant) and other.tenant_id == self.tenant_id and other.emulator is self.emulator

    def __hash__(self) -> int:
        return hash(self.tenant_id)

    @property
    def users(self) -> list[User]:
        """This tenant's mailboxes."""
        return self.emulator.mail.tenant_users(self.tenant_id)

    def add_user(self, address: str, display_name: str | None = None) -> User:
        """A mailbox in this tenant (idempotent; an address another tenant holds is a ValueError)."""
        return self.emulator.mail.add_user(address, display_name, tenant_id=self.tenant_id)

    def user(self, ref: str) -> User:
        """One of this tenant's users by GUID or address; :class:`~emulator.mailstore.NotFound` otherwise."""
        return self.emulator.mail.user(ref, tenant=self.tenant_id)

    def deliver(self, mailbox: str, spec: dict[str, Any], folder: str = "inbox") -> dict[str, Any]:
        """New mail in one of this tenant's mailboxes (its subscriptions are notified)."""
        self.user(mailbox)  # another tenant's address is refused here, not delivered
        return self.emulator.deliver(mailbox, spec, folder)

    def add_app(self, *, client_id: str | None = None, client_secret: str | None = None, multi_tenant: bool = False,
                roles: tuple[str, ...] | None = None) -> App:
        """Register an app in this tenant (its home), consented here; ``multi_tenant`` lets other tenants consent it."""
        app = App(client_id=client_id or str(uuid.uuid4()), secret=client_secret or secrets.token_urlsafe(30),
                  home_tenant=self.tenant_id, multi_tenant=multi_tenant)
        if roles is not None:
            app.roles = tuple(roles)
        return self.emulator.directory.add_app(app)

    def consented(self, app: AppRef) -> bool:
        """Whether ``app`` has a service principal (consent) in this tenant."""
        return self.emulator.directory.consented(_client_id(app), self.tenant_id)

    def environment(self, app: AppRef | None = None) -> dict[str, str]:
        """The graphhook environment for ``app`` (default: the emulator's first app) acting in this tenant."""
        registration = self.emulator.directory.apps[_client_id(app or self.emulator.app_registration)]
        return {**self.emulator.environment(), "AZURE_TENANT_ID": self.tenant_id,
                "AZURE_CLIENT_ID": registration.client_id, "AZURE_CLIENT_SECRET": registration.secret or ""}


class Tenants:
    """The emulator's tenants, first one first; consent and its revocation between apps and tenants."""

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self._items: dict[str, Tenant] = {emulator.tenant_id: Tenant(emulator, emulator.tenant_id)}

    def __iter__(self):
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)

    def get(self, tenant: "Tenant | str | None" = None) -> Tenant:
        """A tenant by id (None: the first); KeyError if the emulator does not serve it."""
        tenant_id = self.emulator.tenant_id if tenant is None else _tenant_id(tenant)
        return self._items[tenant_id]

    def add(self, tenant_id: str | None = None) -> Tenant:
        """A new tenant (a random GUID unless given); the same Tenant again for a known id."""
        tenant_id = tenant_id or str(uuid.uuid4())
        if tenant_id not in self._items:
            self.emulator.directory.add_tenant(tenant_id)
            self._items[tenant_id] = Tenant(self.emulator, tenant_id)
        return self._items[tenant_id]

    def consent(self, app: AppRef, tenant: "Tenant | str", roles: tuple[str, ...] | list[str] | None = None) -> None:
        """Admin consent of ``app`` in ``tenant`` with ``roles`` (None: the permissions the app asks for).

        Consenting again changes the roles; tokens issued before keep the roles they carry, as on Microsoft's.
        """
        self.emulator.directory.consent(_client_id(app), self.get(tenant).tenant_id,
                                        tuple(roles) if roles is not None else None)
        self.emulator.record("consent.granted", app=_client_id(app), tenant=_tenant_id(tenant))

    def revoke(self, app: AppRef, tenant: "Tenant | str") -> int:
        """Delete ``app``'s service principal in ``tenant``; return how many of its subscriptions there were challenged.

        From now on the token endpoint refuses the app in that tenant (AADSTS700016), Graph refuses the
        tokens it already holds there (403, while ``emu.refuse_revoked_tokens``), and each of its
        subscriptions in the tenant gets a ``reauthorizationRequired`` ("permission is revoked",
        graph-protocol.md §3) and stops delivering until consent is back and the app reauthorizes.
        Other tenants, and other apps in this one, go on.
        """
        client_id, tenant_id = _client_id(app), self.get(tenant).tenant_id
        self.emulator.directory.revoke(client_id, tenant_id)
        self.emulator.record("consent.revoked", app=client_id, tenant=tenant_id)
        return self.emulator.challenge(lambda sub: sub.application_id == client_id and sub.tenant_id == tenant_id)

    def describe(self) -> list[dict[str, Any]]:
        """Tenants with their users, consents and the 429s their mailboxes got, for the control API."""
        directory = self.emulator.directory
        throttled = self.emulator.throttle.rejected_by_tenant
        return [{"tenantId": t.tenant_id, "users": sorted(u.mail for u in t.users), "throttled": throttled[t.tenant_id],
                 "consents": [{"clientId": cid, "roles": list(directory.roles_in(directory.apps[cid], tid))}
                              for (cid, tid) in list(directory.consents) if tid == t.tenant_id]}
                for t in self]


def _client_id(app: AppRef) -> str:
    return app if isinstance(app, str) else app.client_id


def _tenant_id(tenant: "Tenant | str") -> str:
    return tenant if isinstance(tenant, str) else tenant.tenant_id
