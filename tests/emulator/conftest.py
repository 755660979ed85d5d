"""Fixtures for testing the emulator on its own: a client that talks to it over HTTPS like any Graph app."""

from __future__ import annotations

from typing import Any

import pytest
import requests


class GraphClient:
    """A thin requests wrapper: bearer token from the emulator's token endpoint, paths relative to /v1.0."""

    def __init__(self, emu: Any, token: str | None = None) -> None:
        self.emu = emu
        self.session = requests.Session()
        self.session.verify = str(emu.ca_path)
        self.token = token or self.new_token()

    def new_token(self) -> str:
        response = self.session.post(f"{self.emu.url}/{self.emu.tenant_id}/oauth2/v2.0/token", data={
            "client_id": self.emu.client_id, "client_secret": self.emu.client_secret,
            "grant_type": "client_credentials", "scope": "https://graph.microsoft.com/.default"})
        response.raise_for_status()
        return response.json()["access_token"]

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else f"{self.emu.graph_url}/{path.lstrip('/')}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.session.request(method, self.url(path), headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, json=json, **kwargs)

    def patch(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def all_pages(self, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Follow @odata.nextLink to the end; return every item."""
        items, url = [], path
        while url:
            body = self.get(url, **kwargs).json()
            items += body["value"]
            url = body.get("@odata.nextLink")
        return items


@pytest.fixture
def graph(emulator) -> GraphClient:
    return GraphClient(emulator)


class Sink:
    """An HTTPS notification endpoint: answers the validation handshake, records every POST body."""

    def __init__(self, emu: Any) -> None:
        import threading
        import time

        from flask import Flask, Response, request

        from graphhook.devserver import BackgroundServer

        self.posts: list[dict[str, Any]] = []  # {"path", "body", "at"}
        self.handshakes: list[str] = []
        self.delay = 0.0  # seconds before answering notifications
        self.status = 202
        self.handshake_mode = "echo"  # echo | wrong | html | 500 | slow
        self._lock = threading.Lock()
        app = Flask("sink")

        @app.post("/<name>")
        def receive(name: str):
            token = request.args.get("validationToken")
            if token is not None:
                self.handshakes.append(token)
                if self.handshake_mode == "slow":
                    time.sleep(2)
                if self.handshake_mode == "500":
                    return "no", 500
                if self.handshake_mode == "html":
                    return Response(token, content_type="text/html")
                body = token + "x" if self.handshake_mode == "wrong" else token
                return Response(body, content_type="text/plain")
            if self.delay:
                time.sleep(self.delay)
            with self._lock:
                self.posts.append({"path": f"/{name}", "body": request.get_json(), "at": time.monotonic()})
            return "", self.status

        pair = emu.ca.issue("sink")
        self.server = BackgroundServer(app, cert=pair.cert_path, key=pair.key_path).start()
        self.url = self.server.url

    def items(self, path: str = "/notifications") -> list[dict[str, Any]]:
        """Every notification item POSTed to ``path`` so far."""
        with self._lock:
            return [item for post in self.posts if post["path"] == path for item in post["body"]["value"]]

    def wait(self, predicate, timeout: float = 15.0):
        """Poll until ``predicate(self)`` is truthy; return its value."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate(self)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"sink condition not met within {timeout}s; posts: {self.posts[-5:]}")


@pytest.fixture
def sink(emulator):
    s = Sink(emulator)
    yield s
    s.server.stop()


def subscribe(graph: GraphClient, sink: Sink, resource: str, **extra: Any) -> dict[str, Any]:
    """Create a subscription delivering to the sink; assert 201; return it."""
    import datetime as dt

    body = {"changeType": "created,updated,deleted", "notificationUrl": f"{sink.url}/notifications",
            "lifecycleNotificationUrl": f"{sink.url}/lifecycle", "resource": resource,
            "expirationDateTime": (graph.emu.clock.now() + dt.timedelta(hours=2)).isoformat(),
            "clientState": "s3cret", **extra}
    headers = extra.pop("headers", None) or {}
    body.pop("headers", None)
    response = graph.post("/subscriptions", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()
