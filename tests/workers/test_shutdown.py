"""A worker's teardown never waits on RQ's pub/sub listener.

``graphhook worker --burst`` sometimes stayed alive 60 s after "done, quitting" (py-spy: the main thread
in ``PubSubWorkerThread.stop`` → ``join``, the listener in ``PubSub.get_message`` → ``Event.wait``). On a
busy machine the listener reads the UNSUBSCRIBE reply before RQ tells it to stop, finds itself
subscribed to nothing and waits for a subscription for RQ's whole 60 s poll. The test forces that
interleaving and records whether the listener would have blocked, instead of timing anything.
"""

from __future__ import annotations

import threading

import pytest

from tests.conftest import wait_for
from workers.metrics import MeteredSimpleWorker, MeteredWorker


class RecordingEvent(threading.Event):
    """A pub/sub "subscribed" flag that notes the first wait that would block, and returns at once instead."""

    def __init__(self) -> None:
        super().__init__()
        self.would_block: list[float | None] = []  # the timeout of that first wait, if any

    def wait(self, timeout: float | None = None) -> bool:
        if self.is_set():
            return True
        if not self.would_block:
            self.would_block.append(timeout)
        return False


@pytest.mark.parametrize("worker_class", [MeteredSimpleWorker, MeteredWorker])
def test_teardown_stops_the_listener_before_it_can_wait_for_a_subscription(redis_client, monkeypatch, worker_class):
    worker = worker_class(["graphhook-shutdown-test"], connection=redis_client)
    flags: list[RecordingEvent] = []
    make_pubsub = redis_client.pubsub

    def pubsub(**kwargs):
        ps = make_pubsub(**kwargs)
        ps.subscribed_event = RecordingEvent()
        flags.append(ps.subscribed_event)
        send_unsubscribe = ps.unsubscribe

        def unsubscribe(*args):
            sent = send_unsubscribe(*args)
            # The busy machine's interleaving: the listener has read the reply before RQ goes on to stop it.
            wait_for(lambda: not ps.subscribed_event.is_set())
            return sent

        ps.unsubscribe = unsubscribe
        return ps

    monkeypatch.setattr(redis_client, "pubsub", pubsub)
    worker.subscribe()
    listener = worker.pubsub_thread
    assert listener is not None and listener.is_alive()

    worker.teardown()  # what the work loop runs once it is done (burst) or asked to stop (SIGTERM)

    assert not listener.is_alive()
    assert flags[0].would_block == []  # it never started RQ's 60 s wait for a subscription
