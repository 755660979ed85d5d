"""What Microsoft documents for the Graph calls graphhook makes: paths, query options, headers and the
property names of bodies and ``$select``. graphhook's own traffic is checked against these tables
(test_graphhook_requests_are_documented.py). All pages: microsoftgraph/microsoft-graph-docs-contrib,
``api-reference/v1.0/api/<page>`` unless a path says otherwise.
"""

from __future__ import annotations

import re

MESSAGE = "api-reference/v1.0/resources/message.md@13a4446"
# Properties and relationships of v1.0 message (resources/message.md at 13a4446).
MESSAGE_PROPERTIES = frozenset({
    "bccRecipients", "body", "bodyPreview", "categories", "ccRecipients", "changeKey", "conversationId",
    "conversationIndex", "createdDateTime", "flag", "from", "hasAttachments", "id", "importance",
    "inferenceClassification", "internetMessageHeaders", "internetMessageId", "isDeliveryReceiptRequested", "isDraft",
    "isRead", "isReadReceiptRequested", "lastModifiedDateTime", "parentFolderId", "receivedDateTime", "replyTo",
    "sender", "sentDateTime", "subject", "toRecipients", "uniqueBody", "webLink",
    "attachments", "extensions", "multiValueExtendedProperties", "singleValueExtendedProperties",
})
MAIL_FOLDER_PROPERTIES = frozenset({"id", "displayName", "parentFolderId", "childFolderCount", "unreadItemCount",
                                    "totalItemCount", "isHidden", "childFolders", "messages"})  # resources/mailfolder.md
USER_PROPERTIES = frozenset({"id", "displayName", "mail", "userPrincipalName", "givenName", "surname", "jobTitle",
                             "mobilePhone", "officeLocation", "preferredLanguage", "businessPhones"})  # resources/user.md
SUBSCRIPTION_PROPERTIES = frozenset({  # resources/subscription.md at 5248ec1
    "changeType", "notificationUrl", "lifecycleNotificationUrl", "resource", "expirationDateTime", "clientState",
    "includeResourceData", "encryptionCertificate", "encryptionCertificateId", "latestSupportedTlsVersion",
    "notificationContentType", "notificationQueryOptions", "notificationUrlAppId"})

_ID = r"[^/]+"
_U = rf"/users/{_ID}"
_M = rf"{_U}(?:/mailFolders/{_ID})?/messages/{_ID}"
# (method, path regex under /v1.0, page, what the $select/$body names are checked against)
PATHS: list[tuple[str, str, str, frozenset[str]]] = [
    ("GET", rf"{_U}", "user-get.md", USER_PROPERTIES),
    ("GET", rf"{_U}/messages", "user-list-messages.md", MESSAGE_PROPERTIES),
    ("GET", rf"{_U}/mailFolders/{_ID}/messages", "user-list-messages.md", MESSAGE_PROPERTIES),
    ("GET", rf"{_U}/mailFolders/{_ID}/messages/delta", "message-delta.md", MESSAGE_PROPERTIES),
    ("GET", rf"{_U}/mailFolders(?:/{_ID}/childFolders)?", "user-list-mailfolders.md", MAIL_FOLDER_PROPERTIES),
    ("GET", rf"{_U}/mailFolders/{_ID}", "mailfolder-get.md", MAIL_FOLDER_PROPERTIES),
    ("POST", rf"{_U}/mailFolders(?:/{_ID}/childFolders)?", "user-post-mailfolders.md", MAIL_FOLDER_PROPERTIES),
    ("GET", rf"{_M}", "message-get.md", MESSAGE_PROPERTIES),
    ("PATCH", rf"{_M}", "message-update.md", MESSAGE_PROPERTIES),
    ("DELETE", rf"{_M}", "message-delete.md", frozenset()),
    ("GET", rf"{_M}/\$value", "message-get.md (MIME)", frozenset()),
    ("GET", rf"{_M}/attachments(?:/{_ID})?", "attachment-get.md", MESSAGE_PROPERTIES),
    ("GET", rf"{_M}/attachments/{_ID}/\$value", "attachment-get.md (raw contents)", frozenset()),
    ("POST", rf"{_M}/(?:move|copy)", "message-move.md", frozenset({"destinationId"})),
    ("POST", rf"{_M}/forward", "message-forward.md", frozenset({"comment", "toRecipients", "message"})),
    ("POST", rf"{_M}/(?:reply|replyAll)", "message-reply.md", frozenset({"comment", "message"})),
    ("POST", rf"{_M}/(?:createReply|createReplyAll|createForward)", "message-createreply.md",
     frozenset({"comment", "message", "toRecipients"})),
    ("POST", rf"{_M}/send", "message-send.md", frozenset()),
    ("POST", rf"{_M}/permanentDelete", "message-permanentdelete.md", frozenset()),
    ("POST", rf"{_M}/attachments", "message-post-attachments.md",
     frozenset({"@odata.type", "name", "contentBytes", "contentType", "isInline", "contentId", "item"})),
    ("POST", rf"{_M}/attachments/createUploadSession", "attachment-createuploadsession.md",
     frozenset({"AttachmentItem"})),
    ("POST", rf"{_U}/messages", "user-post-messages.md", MESSAGE_PROPERTIES),
    ("POST", rf"{_U}/sendMail", "user-sendmail.md", frozenset({"message", "saveToSentItems"})),
    ("GET", r"/subscriptions(?:/[^/]+)?", "subscription-list.md", SUBSCRIPTION_PROPERTIES),
    ("POST", r"/subscriptions", "subscription-post-subscriptions.md", SUBSCRIPTION_PROPERTIES),
    ("PATCH", r"/subscriptions/[^/]+", "subscription-update.md", frozenset({"expirationDateTime"})),
    ("DELETE", r"/subscriptions/[^/]+", "subscription-delete.md", frozenset()),
    ("POST", r"/subscriptions/[^/]+/reauthorize", "subscription-reauthorize.md", frozenset()),
    ("POST", r"/\$batch", "concepts/json-batching.md", frozenset({"requests"})),
]
# OData system query options (concepts/query-parameters.md) and message delta's own (message-delta.md).
QUERY_OPTIONS = frozenset({"$select", "$expand", "$top", "$filter", "$orderby", "$search", "$count", "$skip",
                           "$skiptoken", "$deltatoken", "changeType"})
# Prefer preferences on these pages: IdType (concepts/outlook-immutable-id.md at 122c492), body format
# (message-get.md), page size (message-delta.md, concepts/delta-query-messages.md).
PREFER = [re.compile(p) for p in (r'IdType="ImmutableId"', r'outlook\.body-content-type="(text|html)"',
                                  r"odata\.maxpagesize=\d+")]
# Request headers graphhook may send: the documented ones and HTTP's own.
HEADERS = frozenset({"authorization", "content-type", "prefer", "content-range", "content-length", "accept",
                     "accept-encoding", "connection", "user-agent"})
EXPANDS = frozenset({"attachments", "microsoft.graph.itemattachment/item"})  # message-get.md, attachment-get.md


def route(method: str, path: str) -> tuple[str, frozenset[str]] | None:
    """The documenting page and property names for ``method path`` (path under /v1.0), or None."""
    for m, pattern, page, names in PATHS:
        if m == method and re.fullmatch(pattern, path):
            return page, names
    return None


def prefer_ok(value: str) -> list[str]:
    """The preferences in a ``Prefer`` header that no page documents."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    return [p for p in parts if not any(rx.fullmatch(p) for rx in PREFER)]
