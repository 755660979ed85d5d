"""Worker side of rich notifications: check ``dataSignature`` and decrypt, before any item is acted on.

The receiver has already verified the POST's validation tokens before it
persisted these items (verify → decrypt → act, graph-protocol.md §4). Keys come
from ``GRAPHHOOK_ENCRYPTION_KEYS`` and are loaded once per process.
"""

from __future__ import annotations

import logging
from typing import Any

from graphhook.core.errors import DecryptionError
from graphhook.core.richnotify import KeyRing, decrypt_content
from graphhook.core.settings import Settings

log = logging.getLogger("graphhook.rich")

_rings: dict[tuple[str, str], KeyRing] = {}


def key_ring(settings: Settings) -> KeyRing:
    """The decryption keys named by the settings, loaded once per process (ConfigError if unusable)."""
    spec = (settings.encryption_keys, settings.encryption_key_password)
    if spec not in _rings:
        _rings[spec] = KeyRing.from_spec(settings.encryption_keys, password=settings.encryption_key_password or None)
    return _rings[spec]


def preload(settings: Settings) -> int:
    """Load the configured decryption keys now (a worker's start), so a missing file, a wrong
    password or an unreadable key stops the worker at once instead of dropping the first rich
    notification; the number of keys loaded. ConfigError names the file and the fix."""
    if not settings.encryption_keys.strip():
        return 0
    ring = key_ring(settings)
    log.info("loaded %d rich-notification decryption key(s)", len(ring))
    return len(ring)


def open_encrypted(items: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """Items with ``encryptedContent`` replaced by the decrypted resource in ``resourceData``.

    An item whose signature does not match, or that no loaded key decrypts, is
    dropped with an error log: nothing unverified is acted on (delta resync
    recovers the message). Items without encrypted content pass unchanged.
    """
    if not any("encryptedContent" in item for item in items):
        return items
    ring = key_ring(settings)
    opened = []
    for item in items:
        encrypted = item.get("encryptedContent")
        if encrypted is None:
            opened.append(item)
            continue
        try:
            resource = decrypt_content(encrypted, ring)
        except DecryptionError as exc:
            log.error("dropped rich notification for subscription %s: %s",
                      str(item.get("subscriptionId"))[:64], exc)
            continue
        clear = {k: v for k, v in item.items() if k != "encryptedContent"}
        clear["resourceData"] = {**(item.get("resourceData") or {}), **resource}
        opened.append(clear)
    return opened
