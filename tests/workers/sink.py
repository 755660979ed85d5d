"""A real HTTP webhook sink on 127.0.0.1 for tests: records every request, answers scripted statuses."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

from graphhook.sink import HttpSink


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Sink(HttpSink):
    """``statuses`` are answered in order (then 200); ``requests`` holds what arrived, raw."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        super().__init__()
        self.statuses = list(statuses or [])
        self.requests: list[Received] = []

    def receive(self, path: str, headers: Message, body: bytes) -> int:
        self.requests.append(Received(path, dict(headers.items()), body))
        return self.statuses.pop(0) if self.statuses else 200
