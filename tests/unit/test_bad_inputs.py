"""The bad-input corpus (tests/data/bad/): every problem is reported with its row and reason, and the good
rows of the same file still go on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from accoil_sync.config.models import ProfileConfig, SourceConfig
from accoil_sync.sources import Stage, load_stage
from accoil_sync.traits import ObjectKind
from tests.conftest import ROOT

BAD = ROOT / "tests" / "data" / "bad"

# file -> ({row: (column or None, words in the reason)}, keys that must still be there)
CASES: dict[str, tuple[dict[int | None, tuple[str | None, str]], set[str]]] = {
    "wrong_delimiter.csv": ({None: ("user_id", "';'-delimited")}, set()),
    "missing_header.csv": ({None: ("user_id", "(the key column) is missing")}, set()),
    "ragged.csv": (
        {3: (None, "expected 3 fields, found 2"), 4: (None, "expected 3 fields, found 4")},
        {"u1", "u4"},
    ),
    "bom.csv": ({}, {"u1", "u2"}),
    "latin1.csv": ({3: (None, "not utf-8 text (byte 0xe9")}, {"u1", "u3"}),
    "broken.jsonl": (
        {
            2: (None, "not a JSON object"),
            4: (None, "not a JSON object"),
            5: ("score", "expected a single value"),
        },
        {"u1", "u3"},
    ),
    "huge_fields.csv": ({2: ("segments", "longer than 255")}, {"u2", "u3"}),
    "unicode.csv": ({}, {"ü1", "u2"}),
    "nan_inf.csv": (
        {2: ("score", "NaN"), 3: ("activation", "NaN or infinity"), 4: ("score", "NaN or infinity")},
        {"u4"},
    ),
    "percentages.csv": (
        {2: ("activation", "below 0"), 3: ("activation", "above 100"), 4: ("adoption_recent", "above 100")},
        {"u4"},
    ),
    "dates.csv": ({2: ("last_active", "in the future"), 3: ("last_active", "before 1970")}, {"u3", "u4"}),
    "duplicates.csv": ({}, {"u1", "u2"}),
    "bad_emails.csv": ({}, {"u1", "u2", "u3"}),  # the source keeps them; HubSpot's connector rejects them
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_bad_file_reports_rows_and_keeps_the_good_ones(name: str, tmp_path: Path) -> None:
    expected, keep = CASES[name]
    shutil.copy(BAD / name, tmp_path / name)
    stage = load_stage(
        Stage(tmp_path / "stage", [ProfileConfig(name="Default")], "t"),
        SourceConfig(users=str(tmp_path / name)),
    )
    errors = stage.errors()
    got = {e.row: e for e in errors}
    assert set(got) == set(expected), [str(e) for e in errors]
    for row, (column, words) in expected.items():
        assert got[row].column == column, str(got[row])
        assert words in got[row].reason, str(got[row])
        assert got[row].file.endswith(name)
    records = stage.records(ObjectKind.USER, sorted(keep | {"u1", "u2", "u3", "u4", "ü1"}))
    assert set(records) == keep
    if name == "duplicates.csv":
        assert stage.duplicates(ObjectKind.USER) == [
            ("u1", "Default", 3, [f"{tmp_path / name}:{n}" for n in (2, 4, 5)])
        ]
        assert records["u1"].metrics["Default"]
    stage.close()
