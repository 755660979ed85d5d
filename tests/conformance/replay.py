"""Microsoft's cloud, played back: a ``requests`` transport that answers with documented responses.

Used only where the real emulator cannot stand in — to hand graphhook's parsers the exact bodies
Microsoft publishes (tests/conformance/examples). Every request it saw is kept for assertions.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import requests
from requests.adapters import BaseAdapter


class Replay(BaseAdapter):
    """Answer ``(method, url regex) -> (status, body)`` rules in order; 404 JSON error otherwise."""

    def __init__(self, rules: list[tuple[str, str, int, Any]]) -> None:
        super().__init__()
        self.rules = rules
        self.seen: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # noqa: D102
        self.seen.append(request)
        for method, pattern, status, body in self.rules:
            if request.method == method and re.search(pattern, request.url or ""):
                return self._response(request, status, body(request) if callable(body) else body)
        return self._response(request, 404, {"error": {"code": "ResourceNotFound", "message": request.url}})

    @staticmethod
    def _response(request: requests.PreparedRequest, status: int, body: Any) -> requests.Response:
        response = requests.Response()
        response.status_code, response.request, response.url = status, request, request.url
        response.headers["Content-Type"] = "application/json"
        response._content = json.dumps(body).encode() if body is not None else b""
        return response

    def close(self) -> None:  # noqa: D102
        pass


def session(rules: list[tuple[str, str, int, Any]]) -> tuple[requests.Session, Replay]:
    """A session whose ``https://graph.microsoft.com`` requests are answered by a :class:`Replay`."""
    replay = Replay(rules)
    s = requests.Session()
    s.mount("https://graph.microsoft.com", replay)
    return s, replay


Body = Callable[[requests.PreparedRequest], Any]
