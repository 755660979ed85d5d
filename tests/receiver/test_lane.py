"""Large requests take turns in one lane per process; small ones (Graph's) go past them."""

from __future__ import annotations

import io
import threading

from receiver.lane import LargeRequestLane
from tests.conftest import wait_for


class _App:
    """A WSGI app whose requests for ``/hold`` stay inside it until released; it counts who is inside."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.inside: list[str] = []
        self.most_large_inside = 0
        self.lock = threading.Lock()

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        name = environ["PATH_INFO"]
        large = int(environ.get("CONTENT_LENGTH") or 0) > 100
        with self.lock:
            self.inside.append(name)
            if large:
                self.most_large_inside = max(self.most_large_inside, sum(1 for n in self.inside if n != "/small"))
        if name != "/small":
            self.release.wait(60)
        with self.lock:
            self.inside.remove(name)
        start_response("202 Accepted", [])
        return [b""]


def _call(lane: LargeRequestLane, path: str, size: int, answers: dict, **extra: str) -> None:
    environ = {"PATH_INFO": path, "CONTENT_LENGTH": str(size), "wsgi.input": io.BytesIO(b"x" * size), **extra}
    answers[path] = b"".join(lane(environ, lambda status, headers: answers.setdefault(path + " status", status)))


def test_large_requests_take_turns_while_small_ones_go_past_them():
    app = _App()
    lane = LargeRequestLane(app, threshold=100)
    answers: dict = {}
    first = threading.Thread(target=_call, args=(lane, "/large-1", 1000, answers))
    first.start()
    wait_for(lambda: app.inside == ["/large-1"], timeout=30)
    second = threading.Thread(target=_call, args=(lane, "/large-2", 1000, answers))
    chunked = threading.Thread(target=_call, args=(lane, "/chunked", 0, answers),
                               kwargs={"HTTP_TRANSFER_ENCODING": "chunked"})  # length unknown: large
    second.start()
    chunked.start()
    wait_for(lambda: lane.waiting == 2, timeout=30)  # both queue behind the first, neither entered the app
    assert app.inside == ["/large-1"]

    _call(lane, "/small", 50, answers)  # a Graph-sized POST is served while the lane is taken
    assert answers["/small status"] == "202 Accepted"

    app.release.set()
    for t in (first, second, chunked):
        t.join(60)
    assert {answers[p + " status"] for p in ("/large-1", "/large-2", "/chunked")} == {"202 Accepted"}
    assert app.most_large_inside == 1
    assert lane.waiting == 0

