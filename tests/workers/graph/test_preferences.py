"""The Prefer header every Graph request carries (workers/graph/preferences.py)."""

from __future__ import annotations

from workers.graph import preferences
from workers.graph.client import _batch_part


def test_immutable_ids_join_the_callers_own_preferences():
    merged = preferences.merged({"Prefer": 'outlook.body-content-type="text"', "X": "1"}, preferences.DEFAULT)
    assert merged == {"Prefer": 'outlook.body-content-type="text", IdType="ImmutableId"', "X": "1"}
    assert preferences.merged(None, preferences.DEFAULT) == {"Prefer": 'IdType="ImmutableId"'}


def test_a_preference_the_caller_set_wins_whatever_the_header_case():
    merged = preferences.merged({"prefer": 'IdType="RestId"'}, preferences.DEFAULT)
    assert merged == {"prefer": 'IdType="RestId"'}


def test_nothing_added_when_nothing_is_preferred():
    assert preferences.merged({"A": "b"}, ()) == {"A": "b"}


def test_each_batch_part_carries_the_preference():
    part = _batch_part({"url": "users/u/messages/m", "headers": {"Prefer": "odata.maxpagesize=5"}}, preferences.DEFAULT)
    assert part["headers"]["Prefer"] == 'odata.maxpagesize=5, IdType="ImmutableId"'
