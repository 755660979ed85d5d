"""graphhook's own ``$select`` lists name only real Graph properties (issue 22).

Graph answers 400 for an unknown name (the emulator too, so the end-to-end tests would fail as well); these
name the offending constant or line directly. The property lists are the emulator's, from Microsoft's
resource pages (message, user; mailFolder's are the emulator's folder resource).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from emulator.resources import SELECTABLE_MESSAGE, USER_PROPERTIES
from workers.records.messages import SELECT
from workers.response.search import SUMMARY_FIELDS
from workers.subscriptions.operations import RICH_SELECT
from workers.subscriptions.resync import _initial_params

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = {name.lower() for name in SELECTABLE_MESSAGE}
FOLDER = {"id", "displayname", "parentfolderid", "childfoldercount", "unreaditemcount", "totalitemcount",
          "sizeinbytes", "ishidden"}
# microsoft.graph.attachment (api-reference/v1.0/resources/attachment.md): what every attachment type has.
ATTACHMENT = {"id", "name", "contenttype", "size", "isinline", "lastmodifieddatetime"}
ANY = MESSAGE | {name.lower() for name in USER_PROPERTIES} | FOLDER | ATTACHMENT


@pytest.mark.parametrize("name, fields", [
    ("workers.records.messages.SELECT", SELECT.split(",")),
    ("workers.response.search.SUMMARY_FIELDS", list(SUMMARY_FIELDS)),
    ("workers.subscriptions.operations.RICH_SELECT", RICH_SELECT.split(",")),
    ("workers.subscriptions.resync._initial_params", _initial_params(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
     ["$select"].split(",")),
])
def test_message_selects_name_real_properties(name, fields):
    unknown = [f for f in fields if f.strip().lower() not in MESSAGE]
    assert not unknown, f"{name} selects {unknown}, which microsoft.graph.message does not have"


def test_every_literal_select_in_the_code_names_real_properties():
    pattern = re.compile(r"""["']\$select["']\s*:\s*["']([A-Za-z][\w,]*)["']""")
    found = 0
    for path in [*ROOT.joinpath("workers").rglob("*.py"), *ROOT.joinpath("graphhook").rglob("*.py")]:
        for line_no, line in enumerate(path.read_text().splitlines(), 1):
            for match in pattern.finditer(line):
                found += 1
                unknown = [f for f in match.group(1).split(",") if f.strip().lower() not in ANY]
                assert not unknown, f"{path.relative_to(ROOT)}:{line_no} selects {unknown}"
    assert found >= 5  # the scan still sees graphhook's queries
