"""Trigger dispatch. The built-in ``record`` trigger appends each email event to a Redis list
(and a JSON-lines file when ``GRAPHHOOK_EVENTS_FILE`` is set), so the demo and tests can see it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from receiver import keys


def record(r: redis.Redis, event: dict[str, Any], *, events_file: str = "") -> None:
    """Persist one trigger event: RPUSH to ``graphhook:events`` and append to the events file."""
    event = {**event, "firedAt": time.time()}
    line = json.dumps(event, separators=(",", ":"), sort_keys=True)
    r.rpush(keys.EVENTS, line)
    if events_file:
        with open(events_file, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
