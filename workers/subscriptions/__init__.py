"""Subscriptions that never lapse: the registry, Graph operations, the renewer, lifecycle events and delta resync."""
