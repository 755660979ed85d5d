"""A deadline for the whole request body: a client that trickles it gets 408 and its connection closed.

gunicorn bounds how long it waits for a request's *headers* (on the gevent worker
the receiver runs, by ``keepalive``: ``receiver/gunicorn_conf.py``) but not for its
body: a client sending one byte a second would hold its connection for as long as
it likes. This middleware reads the body (at most ``max_bytes``, the size the app
accepts anyway) before the app runs, and when ``seconds`` pass first it interrupts
the read — a ``gevent.Timeout`` on the gevent worker the receiver runs, else a timer
thread that shuts the socket's read side (sync, gthread) — answers 408 and tells
gunicorn to close the connection. Graph's POSTs are a few KiB sent
at once, so a deadline of seconds never touches them.

Only under gunicorn (which puts the client socket in ``environ["gunicorn.socket"]``);
the development server passes through unchanged.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
from typing import Any, Callable, Iterable

log = logging.getLogger("graphhook.receiver")

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]
# bytes per read: gunicorn's largest recv (SocketUnreader.max_body_chunk). In 64 KiB reads gunicorn copied what it
# had read ahead once per read, and a 4 MiB body cost 3-20 ms of CPU instead of 1 (issue 17).
CHUNK = 1024 * 1024


class BodyDeadline:
    """WSGI middleware: the request body within ``seconds`` or 408 (``GRAPHHOOK_BODY_TIMEOUT_SECONDS``)."""

    def __init__(self, app: WSGIApp, *, seconds: float, max_bytes: int) -> None:
        self.app = app
        self.seconds = seconds
        self.max_bytes = max_bytes

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # the app answers 400 for a malformed length
        # Nothing to wait for, or too large to read at all (the app answers 413 without reading it).
        if sock is None or (not chunked and not 0 < length <= self.max_bytes):
            return self.app(environ, start_response)
        wanted = self.max_bytes + 1 if chunked else length  # one byte over the limit is enough to answer 413
        expired = threading.Event()
        body = (_read_gevent if _gevent_patched() else _read_threads)(environ["wsgi.input"], wanted, sock,
                                                                      self.seconds, expired)
        # A chunked body is complete at its terminator, which the shut-down read side never delivers.
        complete = body is not None and (not expired.is_set() if chunked else len(body) == length)
        if expired.is_set() and not complete:  # (a body that arrived just as the timer fired is kept)
            log.warning("request body not received within %s s: 408, connection closed", self.seconds,
                        extra={"client": environ.get("REMOTE_ADDR", "")})
            return _close(start_response, "408 Request Timeout", b"request body not received in time\n")
        if body is None or not complete:
            return _close(start_response, "400 Bad Request", b"incomplete request body\n")
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["wsgi.input_terminated"] = True
        return self.app(environ, start_response)


def _close(start_response: Callable[..., Any], status: str, text: bytes) -> list[bytes]:
    """Answer ``status`` and make gunicorn close the connection (the rest of the body is never read)."""
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(text))),
                            ("Connection", "close")])
    return [text]


def _gevent_patched() -> bool:
    """Whether this process runs gunicorn's gevent worker (sockets monkey-patched)."""
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("socket")


def _read_gevent(stream: Any, wanted: int, sock: Any, seconds: float, expired: threading.Event) -> bytes | None:
    """Read under a gevent.Timeout: a timer on the hub, no thread (https://www.gevent.org/api/gevent.timeout.html)."""
    import gevent

    timeout = gevent.Timeout(seconds)
    timeout.start()
    try:
        # A fast client's large body is in the socket buffer already, so its reads would not yield: give the
        # other connections of this process their turn after every chunk (receiver/lane.py has why it matters).
        return _read(stream, wanted, between=gevent.sleep if wanted > CHUNK else None)
    except gevent.Timeout as exc:
        if exc is not timeout:
            raise
        expired.set()
        return b""
    except Exception:  # noqa: BLE001 — reset by the client (OSError), or gunicorn's errors for malformed chunks
        return None
    finally:
        timeout.close()


def _read_threads(stream: Any, wanted: int, sock: Any, seconds: float, expired: threading.Event) -> bytes | None:
    """Read with a timer thread that shuts the socket's read side (sync and gthread workers)."""

    def expire() -> None:
        expired.set()
        try:
            sock.shutdown(socket.SHUT_RD)  # the blocked read returns end-of-file at once
        except OSError:
            pass

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        return _read(stream, wanted)
    except Exception:  # noqa: BLE001 — reset by the client (OSError), or gunicorn's errors for malformed chunks
        return None
    finally:
        timer.cancel()


def _read(stream: Any, wanted: int, between: Callable[[], Any] | None = None) -> bytes:
    """Up to ``wanted`` bytes from ``stream``, fewer only at end of file; ``between`` called after each chunk."""
    parts, got = [], 0
    while got < wanted:
        part = stream.read(min(CHUNK, wanted - got))
        if not part:
            break
        parts.append(part)
        got += len(part)
        if between is not None:
            between()
    return b"".join(parts)
