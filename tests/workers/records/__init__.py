"""Tests of workers.records: a Graph message turned into the email record."""
