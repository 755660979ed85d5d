"""Tests of workers.response: search, mailbox operations, purge."""
