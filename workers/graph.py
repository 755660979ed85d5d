"""A small Microsoft Graph client: one pooled session, Graph's errors mapped, throttling honoured.

429/503/504 are retried honouring ``Retry-After`` (seconds or an HTTP date),
with exponential back-off and jitter where it is absent, within a total
budget (https://learn.microsoft.com/graph/throttling).
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from typing import Any, Callable, Iterator

import requests
from requests.adapters import HTTPAdapter

from receiver.errors import GraphError, NotFoundError, ThrottledError

log = logging.getLogger("graphhook.graph")

RETRY_STATUSES = {429, 503, 504}
DEFAULT_RETRY_BUDGET = 60.0  # s of waiting per request before giving up
DEFAULT_TIMEOUT = (5.0, 60.0)  # s connect, read


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def error_from_response(response: requests.Response) -> GraphError:
    """Map Graph's ``{"error": {"code", "message"}}`` to the exception hierarchy."""
    try:
        error = response.json().get("error", {})
        code, message = error.get("code", ""), error.get("message", "")
    except ValueError:
        code, message = "", response.text[:200]
    cls = NotFoundError if response.status_code == 404 else ThrottledError if response.status_code in RETRY_STATUSES else GraphError
    url = response.request.url.split("?")[0] if response.request is not None else ""
    method = response.request.method if response.request is not None else ""
    return cls(response.status_code, code or response.reason or "", message, method=method or "", url=url)


class GraphClient:
    """Calls ``GRAPH_URL`` with a bearer token from ``token_provider``."""

    def __init__(self, base_url: str, token_provider: Callable[[], str], *,
                 session: requests.Session | None = None, retry_budget: float = DEFAULT_RETRY_BUDGET,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token_provider
        self.session = session or self._new_session()
        self.retry_budget = retry_budget
        self._sleep = sleep

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16)
        session.mount("https://", adapter)
        return session

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> requests.Response:
        """Send one request, retrying throttling answers; raise GraphError on error statuses."""
        waited, attempt = 0.0, 0
        headers = dict(kwargs.pop("headers", None) or {})
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        while True:
            headers["Authorization"] = f"Bearer {self._token()}"
            try:
                response = self.session.request(method, self.url(path), headers=headers, stream=stream, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                response = None
                failure: Exception = exc
            if response is not None and response.status_code < 400:
                return response
            if response is not None and response.status_code not in RETRY_STATUSES:
                raise error_from_response(response)
            attempt += 1
            delay = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
            if delay is None:
                delay = min(30.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            if waited + delay > self.retry_budget:
                if response is not None:
                    raise error_from_response(response)
                raise GraphError(0, type(failure).__name__, str(failure), method=method, url=self.url(path).split("?")[0]) from failure
            log.info("graph %s %s: %s, retrying in %.2fs", method, path.split("?")[0],
                     response.status_code if response is not None else type(failure).__name__, delay)
            if response is not None:
                response.close()
            self._sleep(delay)
            waited += delay

    def get(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, json=json, **kwargs)

    def patch(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def paged(self, path: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yield every item of a collection, following ``@odata.nextLink`` to the end."""
        page = self.get(path, **kwargs)
        while True:
            yield from page.get("value", [])
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return
            page = self.get(next_link, headers=kwargs.get("headers"))
