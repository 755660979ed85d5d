"""A small Microsoft Graph client: one pooled session, Graph's errors mapped, throttling honoured.

- 429/503/504 are retried honouring ``Retry-After`` (seconds or an HTTP date),
  with exponential back-off and full jitter where it is absent, bounded by a
  total waiting budget and an attempt count (https://learn.microsoft.com/graph/throttling).
- Requests under ``users/{id}/…`` take a slot of the per-mailbox limiter
  (:mod:`workers.graph.limits`) so all worker processes together stay within
  Outlook's 4 concurrent requests and 10,000 requests per 10 minutes.
- A throttled answer to a mailbox's request is remembered for that mailbox (its Retry-After, in
  Redis, for every process). With ``defer_throttled`` (worker processes) the request raises
  :class:`MailboxBusy` instead of sleeping, and the worker reschedules the job for when the wait is
  over (workers/concurrent.py): a Retry-After never holds a worker thread.
- :meth:`GraphClient.batch` sends up to 20 requests in one ``$batch`` round trip
  (https://learn.microsoft.com/graph/json-batching), retrying throttled parts.
- The bearer token goes only to ``GRAPH_URL``'s origin: a nextLink or a deltaLink (kept in Redis)
  pointing elsewhere is refused before anything is sent (:mod:`workers.graph.links`).
- Every Graph request (and every ``$batch`` part) prefers immutable ids
  (:mod:`workers.graph.preferences`): an id stays valid after a rule moves the message.
- Clock and sleep are injected so tests never wait for real.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import re
import time
from typing import Any, Callable, Iterator

import requests
from requests.adapters import HTTPAdapter

from graphhook.core.errors import AccessDeniedError, GoneError, GraphError, MailboxBusy, NotFoundError, ThrottledError
from workers import metrics
from workers.graph import links, preferences
from workers.graph.limits import MailboxLimiter
from workers.records import attachments

log = logging.getLogger("graphhook.graph")

RETRY_STATUSES = frozenset({429, 503, 504})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
DEFAULT_RETRY_BUDGET = 60.0  # s of waiting per request before giving up
MAX_ATTEMPTS = 8  # tries per request, whatever the budget
BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0  # s, exponential back-off when Graph gives no Retry-After
DEFAULT_TIMEOUT = (5.0, 60.0)  # s connect, read
BATCH_LIMIT = 20  # requests per $batch (json-batching#batch-size-limitations)
DRAIN_LIMIT = 1 << 20  # bytes of an unread body still read to keep the connection (more: closed instead)

_ABSOLUTE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_MAILBOX_RE = re.compile(r"^/?(?:v1\.0/|beta/)?users(?:/([^/?(]+)|\('([^']+)'\))", re.IGNORECASE)


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
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def error_for(status: int, body: Any, *, method: str = "", url: str = "", retry_after: float | None = None) -> GraphError:
    """Map a status and Graph's ``{"error": {"code", "message"}}`` body to the exception hierarchy."""
    error = body.get("error") if isinstance(body, dict) else None
    code = str((error or {}).get("code") or "") if isinstance(error, dict) else ""
    message = str((error or {}).get("message") or "") if isinstance(error, dict) else ""
    if not code and isinstance(body, str):
        message = body[:200]
    cls: type[GraphError] = GraphError
    if status in RETRY_STATUSES:
        cls = ThrottledError
    elif status in (401, 403):
        cls = AccessDeniedError
    elif status == 404:
        cls = NotFoundError
    elif status == 410:
        cls = GoneError
    exc = cls(status, code or str(status), message, method=method, url=url.split("?")[0])
    exc.retry_after = retry_after  # type: ignore[attr-defined]
    exc.body = body if isinstance(body, dict) else None  # type: ignore[attr-defined]  # e.g. nextExpectedRanges
    return exc


def error_from_response(response: requests.Response) -> GraphError:
    """The exception for an error response (the URL is quoted without its query string)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:200]
    req = response.request
    return error_for(response.status_code, body, method=(req.method or "") if req is not None else "",
                     url=(req.url or "") if req is not None else "",
                     retry_after=parse_retry_after(response.headers.get("Retry-After")))


def mailbox_of(path: str) -> str | None:
    """The mailbox (user id or address, lower-case) a Graph path addresses, if any."""
    match = _MAILBOX_RE.match(path)
    return (match.group(1) or match.group(2)).lower() if match else None


def new_session(pool_size: int = 16) -> requests.Session:
    """A keep-alive session; one per process is shared by every request."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    return session


class GraphClient:
    """Calls ``GRAPH_URL`` with a bearer token from ``token_provider``."""

    def __init__(self, base_url: str, token_provider: Callable[[], str], *,
                 session: requests.Session | None = None, limiter: MailboxLimiter | None = None,
                 retry_budget: float = DEFAULT_RETRY_BUDGET, max_attempts: int = MAX_ATTEMPTS,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 on_unauthorized: Callable[[], None] | None = None,
                 prefer: tuple[str, ...] = preferences.DEFAULT) -> None:
        self.base_url = base_url.rstrip("/")
        self._origin = links.origin(self.base_url)
        self._token = token_provider
        self._on_unauthorized = on_unauthorized  # forget a token Graph refused, then try once more
        self.session = session or new_session()
        self.limiter = limiter
        self.retry_budget, self.max_attempts = retry_budget, max_attempts
        self._sleep, self._clock = sleep, clock
        self.requests_sent = 0  # HTTP requests actually sent (benchmarks, tests)
        self.batch_supported = True  # set False once Graph (or a stand-in) refuses $batch
        self.defer_throttled = False  # workers: raise MailboxBusy rather than sleep through a mailbox's Retry-After
        self.prefer = prefer  # Prefer preferences sent with every Graph request (not to upload URLs)

    def url(self, path: str) -> str:
        """Absolute URL for a path relative to the Graph base (absolute URLs, any scheme, pass through)."""
        return path if _ABSOLUTE_RE.match(path) else f"{self.base_url}/{path.lstrip('/')}"

    def _relative(self, path: str) -> str:
        return path[len(self.base_url):] if path.startswith(self.base_url) else path

    def _backoff(self, attempt: int, response: requests.Response | None) -> float:
        delay = parse_retry_after(response.headers.get("Retry-After"), self._clock()) if response is not None else None
        if delay is None:
            delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt))
        return delay

    @contextlib.contextmanager
    def _slot(self, mailbox: str | None, weight: int = 1, cost: int | None = None) -> Iterator[str | None]:
        if self.limiter is None or not mailbox:
            yield None
            return
        token = self.limiter.acquire(mailbox, weight, cost, defer=self.defer_throttled)
        try:
            yield token
        finally:
            self.limiter.release(mailbox, token, weight)

    def _send(self, method: str, path: str, *, stream: bool, weight: int = 1, cost: int | None = None,
              mailbox: str | None = None, limit: bool = True, authorize: bool = True,
              **kwargs: Any) -> requests.Response:
        """One request with retries; the mailbox slot is held only while a request is in flight."""
        mailbox = mailbox or mailbox_of(self._relative(path))
        waited, attempt, reauthorized = 0.0, 0, False
        headers = preferences.merged(kwargs.pop("headers", None), self.prefer if authorize else ())
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        url = self.url(path)
        if authorize and (self._origin is None or links.origin(url) != self._origin):
            # A stored deltaLink or a nextLink on another host would receive our token: refuse, send nothing.
            raise GraphError(0, "LinkOutsideGraph", f"refusing to send the Graph token to {links.shown(url)}: "
                             "only links on GRAPH_URL's host are followed", method=method, url=links.shown(url))
        while True:
            if authorize:
                headers["Authorization"] = f"Bearer {self._token()}"
            failure: Exception | None = None
            response: requests.Response | None = None
            with self._slot(mailbox if limit else None, weight, cost):
                try:
                    self.requests_sent += 1
                    response = self.session.request(method, url, headers=headers, stream=stream, **kwargs)
                    metrics.graph_request(method, response.status_code)
                    if response.status_code < 400:
                        return response
                    if not stream:
                        response.content  # read the error body while the slot is held  # noqa: B018
                except (requests.ConnectionError, requests.Timeout) as exc:
                    metrics.graph_request(method, "error")
                    failure = exc
            if (response is not None and response.status_code == 401 and authorize and self._on_unauthorized
                    and not reauthorized):
                # An expired or revoked token (InvalidAuthenticationToken): fetch a fresh one, once.
                reauthorized = True
                self._on_unauthorized()
                response.close()
                continue
            if response is not None and response.status_code not in RETRY_STATUSES:
                raise error_from_response(response)
            if failure is not None and method.upper() not in IDEMPOTENT:
                # A POST (send, forward, move) may have happened; repeating it could act twice.
                raise GraphError(0, type(failure).__name__, "connection failed", method=method, url=url.split("?")[0]) from failure
            delay = self._backoff(attempt, response)
            attempt += 1
            if response is not None and mailbox and self.limiter is not None:
                # Graph throttled this mailbox: no process sends it another request before the wait is over.
                left = self.limiter.back_off(mailbox, delay)
                if self.defer_throttled:
                    response.close()
                    raise MailboxBusy(mailbox, left, method=method, url=url.split("?")[0])
            if attempt >= self.max_attempts or waited + delay > self.retry_budget:
                if response is not None:
                    raise error_from_response(response)
                raise GraphError(0, type(failure).__name__, "connection failed", method=method, url=url.split("?")[0]) from failure
            log.info("graph %s %s: %s, retrying in %.2fs", method, url.split("?")[0],
                     response.status_code if response is not None else type(failure).__name__, delay)
            if response is not None:
                response.close()
            self._sleep(delay)
            waited += delay

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send one request, retrying throttling answers; raise GraphError on error statuses."""
        return self._send(method, path, stream=False, **kwargs)

    @contextlib.contextmanager
    def stream(self, path: str, **kwargs: Any) -> Iterator[requests.Response]:
        """GET ``path`` as a stream; the mailbox slot is held (and kept alive) until the block ends."""
        mailbox = mailbox_of(self._relative(path))
        with self._slot(mailbox) as token:  # held for the whole download, not just the headers
            response = self._send("GET", path, stream=True, limit=False, **kwargs)
            limiter = self.limiter

            def extend() -> None:
                if limiter is not None and token and mailbox:
                    limiter.extend(mailbox, token)

            response.extend_slot = extend  # type: ignore[attr-defined]
            try:
                yield response
            finally:
                _release(response)

    def upload_range(self, url: str, data: bytes, content_range: str, *, mailbox: str) -> requests.Response:
        """PUT one byte range to a pre-authenticated upload URL (``createUploadSession``).

        Such a URL carries its own credential and refuses an ``Authorization`` header
        (https://learn.microsoft.com/graph/outlook-large-attachments); otherwise this is an
        ordinary request: the mailbox's slot, throttling retries, GraphError on failure.
        """
        return self._send("PUT", url, stream=False, mailbox=mailbox, authorize=False, data=data,
                          headers={"Content-Type": "application/octet-stream", "Content-Range": content_range})

    def get(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """GET and decode JSON."""
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        """POST a JSON body."""
        return self.request("POST", path, json=json, **kwargs)

    def patch(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        """PATCH a JSON body."""
        return self.request("PATCH", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        """DELETE a resource."""
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

    def batch(self, requests_: list[dict[str, Any]], *, new_sink: Callable[[], Any] | None = None,
              sinks: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run GET-style requests (``{"method", "url", "headers"?, "body"?}``) through ``$batch``.

        Returns one ``{"status", "headers", "body"}`` per request, in the order
        given. Parts throttled with 429/503/504 are sent again after their
        ``Retry-After``; other error statuses are returned for the caller to map
        with :func:`error_for`. More than 20 requests go in several batches.
        With ``new_sink``, replies are streamed and long ``contentBytes`` strings
        go to sinks (collected in ``sinks``), as for a single message.
        """
        results: list[dict[str, Any] | None] = [None] * len(requests_)
        pending = list(range(len(requests_)))
        waited, attempt = 0.0, 0
        while pending:
            throttled: list[int] = []
            delay = 0.0
            for start in range(0, len(pending), BATCH_LIMIT):
                chunk = pending[start:start + BATCH_LIMIT]
                body = {"requests": [{"id": str(i), **_batch_part(requests_[i], self.prefer)} for i in chunk]}
                # Graph runs up to 4 parts at once against the mailbox: take as many slots.
                first = requests_[chunk[0]]["url"]
                reply = self._send("POST", "$batch", stream=new_sink is not None, json=body,
                                   weight=min(len(chunk), 4), cost=len(chunk), mailbox=mailbox_of(first))
                if new_sink is None:
                    document = reply.json()
                else:
                    with reply:
                        document, diverted = attachments.read_json(reply.iter_content(attachments.CHUNK), new_sink)
                    if sinks is not None:
                        sinks.update(diverted)
                for part in document.get("responses", []):
                    index = int(part["id"])
                    # Graph counts each part as a request (throttling, budget): so do the metrics.
                    metrics.graph_request(requests_[index].get("method", "GET"), part.get("status", 0))
                    if part.get("status") in RETRY_STATUSES:
                        throttled.append(index)
                        headers = {k.lower(): v for k, v in (part.get("headers") or {}).items()}
                        wait = parse_retry_after(headers.get("retry-after"), self._clock())
                        delay = max(delay, wait if wait is not None else random.uniform(0, BACKOFF_BASE * 2 ** attempt))
                    results[index] = {"status": part.get("status"), "headers": part.get("headers") or {},
                                      "body": part.get("body")}
            if not throttled:
                break
            batch_mailbox = mailbox_of(requests_[throttled[0]]["url"])
            if batch_mailbox and self.limiter is not None:
                self.limiter.back_off(batch_mailbox, delay)
                if self.defer_throttled:
                    break  # the throttled answers stay in the results; fetching them again defers the job
            attempt += 1
            if attempt >= self.max_attempts or waited + delay > self.retry_budget:
                break  # the throttled answers stay in the results
            self._sleep(delay)
            waited += delay
            pending = sorted(throttled)
        return [r if r is not None else {"status": 0, "headers": {}, "body": None} for r in results]


def _release(response: requests.Response) -> None:
    """Done with a streamed response: give its connection back to the pool if little of the body is left.

    A JSON parser stops at the document's end, before the stream reports it; closing such a
    response closes its connection, and the next request pays a new TLS handshake (it did, for
    every message). What is left, up to ``DRAIN_LIMIT`` bytes, is read and dropped instead.
    """
    raw = response.raw
    left = getattr(raw, "length_remaining", None)
    if raw is not None and (left is None or left <= DRAIN_LIMIT):
        try:
            read = 0
            while read <= DRAIN_LIMIT:
                chunk = raw.read(65536, decode_content=False)
                if not chunk:
                    raw.release_conn()  # the whole body was read: the connection can serve the next request
                    return
                read += len(chunk)
        except Exception:  # noqa: BLE001 — a broken stream: close it below
            pass
    response.close()  # too much left (an abandoned download) or broken: close the connection


def _batch_part(request: dict[str, Any], prefer: tuple[str, ...] = ()) -> dict[str, Any]:
    part = {"method": request.get("method", "GET"), "url": "/" + request["url"].lstrip("/")}
    headers = preferences.merged(request.get("headers"), prefer)  # the batch's own headers do not reach its parts
    if headers:
        part["headers"] = headers
    if request.get("body") is not None:
        part["body"] = request["body"]
        part.setdefault("headers", {})["Content-Type"] = "application/json"
    return part
