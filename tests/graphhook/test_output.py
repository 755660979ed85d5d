"""The one table printer every command uses: aligned columns a responder can read and copy ids from."""

from __future__ import annotations

import io

from graphhook.output import pairs, table


def test_columns_are_aligned_to_the_widest_cell_and_blank_for_missing_values():
    out = io.StringIO()
    table([{"id": "AAMk-1", "mailbox": "alice@contoso.com", "state": None},
           {"id": "AAMk-22222", "mailbox": "bob@contoso.com", "state": "failing"}],
          ["id", "mailbox", "state"], stream=out)
    assert out.getvalue().splitlines() == [
        "ID          MAILBOX            STATE",
        "AAMk-1      alice@contoso.com",
        "AAMk-22222  bob@contoso.com    failing",
    ]


def test_a_cell_renderer_decides_what_is_shown():
    out = io.StringIO()
    table([{"subject": "x" * 80}], ["subject"], stream=out, cell=lambda row, column: row[column][:10])
    assert out.getvalue().splitlines()[1] == "x" * 10


def test_pairs_align_names_and_put_multi_line_values_below():
    out = io.StringIO()
    pairs({"id": "AAMk-1", "subject": "Invoice", "body": "line 1\nline 2"}, stream=out)
    assert out.getvalue().splitlines() == ["id       AAMk-1", "subject  Invoice", "body", "line 1", "line 2"]
