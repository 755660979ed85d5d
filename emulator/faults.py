"""Switchable failures: injected 429/503/504, slow answers and dropped connections.

Each rule applies to requests whose category (``graph``, ``token``,
``subscriptions``) matches, with a probability or for the next N requests.
Tests flip them on and off through the Python API or ``POST /_emulator/faults``.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from flask import abort, jsonify, make_response


@dataclass
class FaultRule:
    """Fail matching requests with ``status`` (0 = reset the connection) at ``rate`` or ``count`` times."""

    category: str = "graph"
    status: int = 503
    rate: float = 0.0
    count: int = 0
    retry_after: float | None = 1.0
    delay: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, got {self.rate!r}")
        if self.status not in (0, 429, 500, 502, 503, 504):
            raise ValueError(f"status must be 0 (reset), 429, 500, 502, 503 or 504, got {self.status!r}")


ERROR_CODES = {
    429: ("TooManyRequests", "Please retry again later."),
    500: ("InternalServerError", "An internal server error occurred."),
    502: ("BadGateway", "Bad gateway."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable. Please retry later."),
    504: ("GatewayTimeout", "The gateway timed out."),
}


class ConnectionReset(Exception):
    """Raised inside a request to make the server drop the connection without an answer."""


class Faults:
    """The active fault rules and what they have done."""

    def __init__(self, seed: int | None = None) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.injected = 0

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def _pick(self, category: str) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if rule.category not in (category, "*"):
                    continue
                if rule.count > 0:
                    rule.count -= 1
                    if rule.count == 0 and rule.rate == 0:
                        self._rules.remove(rule)
                    return rule
                if rule.rate and self._random.random() < rule.rate:
                    return rule
        return None

    def maybe_fail(self, category: str) -> None:
        """Abort the current request if a rule fires for ``category``."""
        rule = self._pick(category)
        if rule is None:
            return
        self.injected += 1
        if rule.delay:
            time.sleep(rule.delay)
        if rule.status == 0:
            raise ConnectionReset()
        code, message = ERROR_CODES[rule.status]
        response = make_response(jsonify({"error": {"code": code, "message": message, "innerError": {}}}), rule.status)
        if rule.retry_after is not None:
            response.headers["Retry-After"] = f"{rule.retry_after:g}"
        abort(response)
