"""Tests of workers.triggers: configuration, rules, actions, webhooks, handlers."""
