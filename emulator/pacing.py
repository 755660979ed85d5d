"""How long Graph takes and how it counts each mailbox's requests: latency, the per-mailbox limits, Retry-After.

- **Latency.** Real Graph answers a call in roughly 100–300 ms; the emulator, in about 1 ms. With
  ``emu.latency`` (seconds; ``graphhook emulator --latency-ms N``, ``POST /_emulator/latency``)
  every Graph call takes that much longer, while it counts against its mailbox's concurrency
  limit, as it would on Graph. A ``$batch`` takes about one latency: its parts add none.
- **Limits.** Requests under ``/v1.0/users/{id}/`` count against their app and mailbox's limits
  (:mod:`emulator.throttle`); a 429 to a mailbox starts its Retry-After, and a request before it
  has passed is refused again and counted (``emu.throttle.stats()``, ``GET /_emulator/throttle``).
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import unquote

from flask import g, request

from .graphapi import find_user, graph_error

_MAILBOX_PATH = re.compile(r"^/v1\.0/users/([^/]+)/", re.IGNORECASE)
BATCH_PART = "X-Emulator-Batch"  # header the $batch handler sets on the parts it runs


def admit(emu: Any) -> Any:
    """Count this request against its app-and-mailbox limits; a 429 response if over, else None."""
    match = _MAILBOX_PATH.match(request.path)
    if match is None:
        return None
    ref = unquote(match.group(1))
    try:
        mailbox = find_user(ref).id
    except KeyError:
        mailbox = ref.lower()
    key = (g.app_id, g.tenant_id, mailbox)  # Outlook counts per app and mailbox; the tenant keeps tenants' keys apart
    g.mailbox_key = key
    upload = request.content_length or 0 if request.method in ("POST", "PATCH", "PUT") else 0
    rejection = emu.throttle.acquire(key, upload)
    if rejection is not None:
        g.wait_kept = not rejection.starts_wait  # an early request does not make the mailbox's wait longer
        response, status = graph_error(429, rejection.code, rejection.message)
        response.headers["Retry-After"] = f"{rejection.retry_after:g}"
        return response, status
    g.throttle_key = key
    return None


def wait(emu: Any) -> None:
    """Take Graph's time to answer (not for the parts of a ``$batch``, which took it once)."""
    if emu.latency > 0 and request.headers.get(BATCH_PART) is None:
        emu.paced += 1
        time.sleep(emu.latency)


def answered(emu: Any, response: Any) -> None:
    """After a 429 to a mailbox: no request to it before its Retry-After has passed."""
    key = g.get("mailbox_key")
    if key is None or response.status_code != 429 or g.get("wait_kept"):
        return
    try:
        retry_after = float(response.headers.get("Retry-After", "0"))
    except ValueError:
        retry_after = 0.0
    emu.throttle.answered_429(key, retry_after)
