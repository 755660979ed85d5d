"""Tests of workers.graph: the Graph client, tokens, politeness, uploads."""
