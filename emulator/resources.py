"""Graph resource builders: a full ``message`` (and its attachments) from a short spec or a Graph payload.

Property names follow https://learn.microsoft.com/graph/api/resources/message. Keys that start with ``_``
are the emulator's bookkeeping (``_immutableId``, ``_seq``) and are never serialized.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import secrets
import uuid
from typing import Any


def graph_id(prefix: str = "AAMk") -> str:
    """An opaque id in the style of Outlook REST ids (URL-safe base64, padded)."""
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(45)).decode()


def isoformat(moment: dt.datetime) -> str:
    """Graph's UTC timestamp format: ``2016-03-19T22:11:09Z``."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _recipient(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        if "emailAddress" in value:
            email = value["emailAddress"]
            return {"emailAddress": {"name": email.get("name") or email["address"], "address": email["address"]}}
        return {"emailAddress": {"name": value.get("name", value["address"]), "address": value["address"]}}
    return {"emailAddress": {"name": str(value), "address": str(value)}}


def make_attachment(spec: dict[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
    """Build a Graph attachment from a short spec (``kind`` file/item/reference) or a Graph attachment."""
    kind = spec.get("kind") or {
        "#microsoft.graph.fileAttachment": "file", "#microsoft.graph.itemAttachment": "item",
        "#microsoft.graph.referenceAttachment": "reference",
    }.get(spec.get("@odata.type", ""), "file")
    base = {
        "id": graph_id("AAMkATT"),
        "lastModifiedDateTime": isoformat(now or dt.datetime.now(dt.timezone.utc)),
        "name": spec["name"],
        "isInline": bool(spec.get("isInline", False)),
    }
    if kind == "file":
        if "contentBytes" in spec:
            content = base64.b64decode(spec["contentBytes"])
        else:
            content = spec["content"] if isinstance(spec["content"], bytes) else spec["content"].encode()
        base.update({
            "@odata.type": "#microsoft.graph.fileAttachment",
            "contentType": spec.get("contentType", "application/octet-stream"),
            "size": len(content),
            "contentId": spec.get("contentId"),
            "contentLocation": None,
            "contentBytes": base64.b64encode(content).decode(),
        })
    elif kind == "item":
        base.update({
            "@odata.type": "#microsoft.graph.itemAttachment",
            "contentType": None,
            "size": 0,
            "item": build_message(spec["item"], now),
        })
    elif kind == "reference":
        # v1.0's referenceAttachment has contentType, id, isInline, lastModifiedDateTime, name and size only:
        # sourceUrl and providerType are beta (resources/referenceattachment.md at 0aca024). A spec's
        # sourceUrl is accepted and not served; size is that of the link's metadata on the message.
        base.update({
            "@odata.type": "#microsoft.graph.referenceAttachment",
            "contentType": spec.get("contentType"),
            "size": len(str(spec.get("sourceUrl") or "")) + 512,
        })
    else:
        raise ValueError(f"unknown attachment kind {kind!r}")
    return base


def build_message(spec: dict[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
    """Turn a short message spec into a full Graph message resource."""
    now = now or dt.datetime.now(dt.timezone.utc)
    sender = _recipient(spec.get("from", "sender@example.com"))
    body_html = spec.get("html")
    body_text = spec.get("body", "")
    if isinstance(body_text, dict):  # a Graph itemBody
        body = {"contentType": body_text.get("contentType", "text").lower(), "content": body_text.get("content", "")}
        body_text = body["content"] if body["contentType"] == "text" else ""
        body_html = body["content"] if body["contentType"] == "html" else None
    else:
        body = {"contentType": "html", "content": body_html} if body_html else {"contentType": "text", "content": body_text}
    preview_source = body_text or _strip_tags(body_html or "")
    headers = spec.get("headers") or spec.get("internetMessageHeaders") or {}
    if isinstance(headers, dict):
        headers = [{"name": k, "value": v} for k, v in headers.items()]
    message_id = spec.get("internetMessageId") or f"<{uuid.uuid4().hex}@{sender['emailAddress']['address'].split('@')[-1]}>"
    attachments = [make_attachment(a, now) for a in spec.get("attachments", [])]
    received = spec.get("receivedDateTime") or isoformat(now)
    subject = spec.get("subject", "")
    return {
        "id": graph_id(),
        "createdDateTime": received,
        "lastModifiedDateTime": received,
        "changeKey": base64.b64encode(secrets.token_bytes(12)).decode(),
        "categories": list(spec.get("categories", [])),
        "receivedDateTime": received,
        "sentDateTime": spec.get("sentDateTime", received),
        "hasAttachments": any(not a["isInline"] for a in attachments),
        "internetMessageId": message_id,
        "subject": subject,
        "bodyPreview": " ".join(preview_source.split())[:255],
        "importance": spec.get("importance", "normal"),
        "parentFolderId": None,
        "conversationId": spec.get("conversationId") or "AAQk" + hashlib.sha1(_thread_topic(subject).encode()).hexdigest(),
        "conversationIndex": spec.get("conversationIndex") or _conversation_index(now),
        "isDeliveryReceiptRequested": False,
        "isReadReceiptRequested": False,
        "isRead": bool(spec.get("isRead", False)),
        "isDraft": bool(spec.get("isDraft", False)),
        "webLink": "https://outlook.office365.com/owa/?ItemID=" + uuid.uuid4().hex,
        "inferenceClassification": "focused",
        "body": body,
        "sender": _recipient(spec["sender"]) if spec.get("sender") else sender,
        "from": sender,
        "toRecipients": [_recipient(r) for r in spec.get("to", spec.get("toRecipients", []))],
        "ccRecipients": [_recipient(r) for r in spec.get("cc", spec.get("ccRecipients", []))],
        "bccRecipients": [_recipient(r) for r in spec.get("bcc", spec.get("bccRecipients", []))],
        "replyTo": [_recipient(r) for r in spec.get("replyTo", [])],
        "flag": {"flagStatus": "notFlagged"},
        "internetMessageHeaders": headers,
        "attachments": attachments,
        "_immutableId": graph_id("AAkAL"),
        "_seq": 0,
    }


def _conversation_index(now: dt.datetime) -> str:
    """A thread's root index as Outlook writes it (MS-OXOMSG 2.2.1.3): a reserved byte, 5 bytes of the
    FILETIME, a 16-byte GUID; 22 bytes, base64 (api/attachment-get.md shows ``AQHTAbcSwb41IIwGp0qstrYSZH+U7Q==``)."""
    filetime = int((now.timestamp() + 11644473600) * 10_000_000)
    return base64.b64encode(b"\x01" + filetime.to_bytes(8, "big")[:5] + uuid.uuid4().bytes).decode()


def _strip_tags(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


def _thread_topic(subject: str) -> str:
    return re.sub(r"^\s*((re|fw|fwd)\s*:\s*)+", "", subject, flags=re.IGNORECASE).lower()


# The properties of a message resource, for $select / $filter validation.
MESSAGE_PROPERTIES = tuple(k for k in build_message({}) if not k.startswith("_")) + ("uniqueBody",)
# "Returned only on applying a $select query option" (https://learn.microsoft.com/graph/api/resources/message).
SELECT_ONLY = ("internetMessageHeaders", "uniqueBody")
# What $select accepts on a message: its documented properties and relationships; any other name is a 400.
SELECTABLE_MESSAGE = tuple(dict.fromkeys(MESSAGE_PROPERTIES + (
    "conversationIndex", "extensions", "singleValueExtendedProperties", "multiValueExtendedProperties")))
# The user resource's documented properties (https://learn.microsoft.com/graph/api/resources/user): $select
# accepts these (those the emulator does not hold come back null, as unset ones do from Graph), nothing else.
USER_PROPERTIES = (
    "aboutMe", "accountEnabled", "ageGroup", "assignedLicenses", "assignedPlans", "authorizationInfo", "birthday",
    "businessPhones", "city", "companyName", "consentProvidedForMinor", "country", "createdDateTime", "creationType",
    "customSecurityAttributes", "deletedDateTime", "department", "displayName", "employeeHireDate", "employeeId",
    "employeeLeaveDateTime", "employeeOrgData", "employeeType", "externalUserState", "externalUserStateChangeDateTime",
    "faxNumber", "givenName", "hireDate", "id", "identities", "imAddresses", "interests", "isManagementRestricted",
    "isResourceAccount", "jobTitle", "lastPasswordChangeDateTime", "legalAgeGroupClassification",
    "licenseAssignmentStates", "mail", "mailboxSettings", "mailNickname", "mobilePhone", "mySite", "officeLocation",
    "onPremisesDistinguishedName", "onPremisesDomainName", "onPremisesExtensionAttributes", "onPremisesImmutableId",
    "onPremisesLastSyncDateTime", "onPremisesProvisioningErrors", "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier", "onPremisesSyncEnabled", "onPremisesUserPrincipalName", "otherMails",
    "passwordPolicies", "passwordProfile", "pastProjects", "postalCode", "preferredDataLocation", "preferredLanguage",
    "preferredName", "provisionedPlans", "proxyAddresses", "refreshTokensValidFromDateTime", "responsibilities",
    "schools", "securityIdentifier", "serviceProvisioningErrors", "showInAddressList", "signInActivity",
    "signInSessionsValidFromDateTime", "skills", "state", "streetAddress", "surname", "usageLocation",
    "userPrincipalName", "userType",
)


