"""The demo's and soak's webhook sink counts only deliveries whose signature verifies."""

from __future__ import annotations

import json
import time

import requests

from graphhook.sink import WebhookSink
from workers.triggers.webhooks import SIGNATURE_HEADER, sign


def test_signed_deliveries_count_and_forged_ones_get_401():
    sink = WebhookSink("sink-secret").start()
    try:
        body = json.dumps({"id": "evt-1", "email": {"originalId": "msg-1"}}).encode()
        good = requests.post(sink.url, data=body, timeout=10,
                             headers={SIGNATURE_HEADER.lower(): sign(body, secret="sink-secret", timestamp=int(time.time()))})
        forged = requests.post(sink.url, data=body, timeout=10,
                               headers={SIGNATURE_HEADER: sign(body, secret="wrong", timestamp=int(time.time()))})
        unsigned = requests.post(sink.url, data=body, timeout=10)
        assert (good.status_code, forged.status_code, unsigned.status_code) == (200, 401, 401)
        assert sink.posts_per_message() == {"msg-1": 1} and sink.bad_signatures == 2
        assert sink.events_per_message() == {"msg-1": {"evt-1"}}
    finally:
        sink.stop()
