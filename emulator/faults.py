"""Switchable failures: injected 429/5xx answers, slow answers (timeouts) and dropped connections.

A rule applies to requests of its category (``graph``, ``token``,
``subscriptions`` or ``*``), optionally only to a method and to paths
matching a regular expression, with a probability (``rate``) or for the next
``count`` requests. ``status`` is the answer: 503/504 (graph-protocol.md §5:
503 may carry Retry-After, 504 may come with it), 429, 500, 502; ``0``
resets the connection without an answer; ``None`` only delays (``delay``
seconds) and then serves the request normally — a slow answer or, past the
client's timeout, a timeout. Tests flip rules on and off through the Python
API (``emu.faults.add(FaultRule(...))``) or ``POST /_emulator/faults``.
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass, field

from flask import abort, jsonify, make_response

CATEGORIES = ("graph", "token", "subscriptions", "*")


@dataclass
class FaultRule:
    """Fail matching requests with ``status`` at ``rate``, or the next ``count`` of them."""

    category: str = "graph"
    status: int | None = 503
    rate: float = 0.0
    count: int = 0
    retry_after: float | None = 1.0
    delay: float = 0.0
    path: str | None = None  # a regular expression searched in the request path
    method: str | None = None
    fired: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"category must be one of {CATEGORIES}, got {self.category!r}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, got {self.rate!r}")
        if self.status not in (None, 0, 429, 500, 502, 503, 504):
            raise ValueError(f"status must be None (slow only), 0 (reset), 429, 500, 502, 503 or 504, got {self.status!r}")
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {self.delay!r}")
        if self.status is None and not self.delay:
            raise ValueError("a rule with status None only delays: give it a delay")
        if self.rate == 0 and self.count <= 0:
            raise ValueError("a rule needs a rate or a count")
        if self.path is not None:
            re.compile(self.path)

    def applies(self, category: str, method: str | None, path: str | None) -> bool:
        return (self.category in (category, "*")
                and (self.method is None or method is None or self.method.upper() == method.upper())
                and (self.path is None or path is None or re.search(self.path, path) is not None))


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
        """Activate ``rule``; return it (its ``fired`` counts what it did)."""
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: FaultRule) -> None:
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def _pick(self, category: str, method: str | None, path: str | None) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if not rule.applies(category, method, path):
                    continue
                if rule.count > 0:
                    rule.count -= 1
                    if rule.count == 0 and rule.rate == 0:
                        self._rules.remove(rule)
                elif not (rule.rate and self._random.random() < rule.rate):
                    continue
                rule.fired += 1
                self.injected += 1
                return rule
        return None

    def maybe_fail(self, category: str, method: str | None = None, path: str | None = None) -> None:
        """Delay, abort or reset the current request if a rule fires for it."""
        rule = self._pick(category, method, path)
        if rule is None:
            return
        if rule.delay:
            time.sleep(rule.delay)
        if rule.status is None:
            return
        if rule.status == 0:
            raise ConnectionReset()
        code, message = ERROR_CODES[rule.status]
        response = make_response(jsonify({"error": {"code": code, "message": message, "innerError": {}}}), rule.status)
        if rule.retry_after is not None:
            response.headers["Retry-After"] = f"{rule.retry_after:g}"
        abort(response)
