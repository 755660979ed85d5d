"""Tests of workers.subscriptions: the renewer, lifecycle events, resync."""
