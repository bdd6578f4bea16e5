"""The bad-input corpus (tests/data/bad/): every problem is reported with its row and reason, and the good
rows of the same file still go on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from accoil_sync.config.models import ColumnMap, ProfileConfig, SourceConfig
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
    "empty.csv": ({None: ("user_id", "(the key column) is missing")}, set()),
    "header_only.csv": ({}, set()),
    "duplicate_header.csv": ({None: ("score", "repeats the column 'score' (columns [2, 4])")}, set()),
    "nul_email.csv": ({3: ("email", "contains a NUL byte")}, {"u1"}),
    "big_int.csv": ({2: ("frequency", "is too large")}, {"u2"}),
    # Read without a baseline, a renamed metric column is simply absent (see the tests below for the rest).
    "renamed_metric.csv": ({}, {"u1", "u2", "u3"}),
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


def _stage(tmp_path: Path, cfg: SourceConfig, expected: tuple[str, ...] = ()) -> Stage:
    return load_stage(
        Stage(tmp_path / "stage", [ProfileConfig(name="Default")], "t"), cfg, {ObjectKind.USER: expected}
    )


def test_a_metric_column_renamed_since_the_last_run_skips_the_file_and_names_the_closest(
    tmp_path: Path,
) -> None:
    """score -> engagement_score upstream: with score seen at the last accepted run, the file is a
    file-level error naming the columns it has and the closest match; nothing of it is staged, so rows with
    score 140 or NaN cannot pass as "score emptied"."""
    stage = _stage(tmp_path, SourceConfig(users=str(BAD / "renamed_metric.csv")), ("user_id", "score"))
    (error,) = stage.errors()
    assert (error.row, error.column, error.scope) == (None, "score", "file")
    assert "in this source at the last accepted run" in error.reason
    assert "closest match: 'engagement_score'" in error.reason
    assert "'user_id', 'engagement_score', 'segments'" in error.reason
    assert "--allow-mass-change" in error.reason
    assert stage.records(ObjectKind.USER, ["u1", "u2", "u3"]) == {}
    stats = stage.stats.by_kind[ObjectKind.USER]
    assert (stats.file_errors, stats.objects) == (1, 0)
    stage.close()


def test_the_closest_match_is_not_a_column_the_product_reads_itself(tmp_path: Path) -> None:
    """A long-format export (one row per profile) whose score column was renamed: ``score_name`` is
    closer by spelling, but it is the profile's column; the renamed one is ``engagement_score``."""
    path = tmp_path / "users.csv"
    path.write_text("user_id,score_name,engagement_score\nu1,Default,40\n")
    stage = _stage(tmp_path, SourceConfig(users=str(path)), ("user_id", "score_name", "score"))
    (error,) = stage.errors()
    assert error.column == "score" and "closest match: 'engagement_score'" in error.reason
    stage.close()


def test_a_typo_in_the_column_mapping_is_a_file_error(tmp_path: Path) -> None:
    cfg = SourceConfig(users=str(BAD / "duplicates.csv"), columns=ColumnMap(score="scor"))
    stage = _stage(tmp_path, cfg)
    (error,) = stage.errors()
    assert (error.column, error.scope) == ("scor", "file")
    assert "mapped in [source.columns] as score = 'scor'" in error.reason
    assert "closest match: 'score'" in error.reason
    assert stage.stats.by_kind[ObjectKind.USER].objects == 0
    stage.close()


def test_a_mapping_to_a_column_that_is_not_there_points_at_the_one_inside_its_name(tmp_path: Path) -> None:
    """``score = "engagement_score"`` over a file that still has ``score``: the hint is ``score``, not
    ``segments`` (closer by spelling alone)."""
    path = tmp_path / "users.csv"
    path.write_text("user_id,score,segments\nu1,40,A\n")
    cfg = SourceConfig(users=str(path), columns=ColumnMap(score="engagement_score"))
    stage = _stage(tmp_path, cfg)
    (error,) = stage.errors()
    assert error.column == "engagement_score" and "closest match: 'score'" in error.reason
    stage.close()


def test_an_unnamed_column_is_never_the_hint(tmp_path: Path) -> None:
    """An export with a trailing comma has a column named '': it is inside every name, and no hint."""
    path = tmp_path / "users.csv"
    path.write_text("userid,score,\nu1,40,\n")
    stage = _stage(tmp_path, SourceConfig(users=str(path)))
    (error,) = stage.errors()
    assert error.column == "user_id" and "closest match: 'userid'" in error.reason
    stage.close()


def test_a_json_lines_file_without_a_required_column_drops_the_rows_already_read(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"
    path.write_text('{"user_id": "u1", "engagement_score": 140}\n{"user_id": "u2", "engagement_score": 5}\n')
    stage = _stage(tmp_path, SourceConfig(users=str(path)), ("score",))
    (error,) = stage.errors()
    assert error.scope == "file" and "closest match: 'engagement_score'" in error.reason
    stats = stage.stats.by_kind[ObjectKind.USER]
    assert (stats.objects, stats.skipped) == (0, 2)
    stage.close()


def test_a_line_nested_100000_deep_is_one_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"
    deep = '{"user_id": "u2", "score": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path.write_text('{"user_id": "u1", "score": 10}\n' + deep + '\n{"user_id": "u3", "score": 30}\n')
    stage = _stage(tmp_path, SourceConfig(users=str(path)))
    (error,) = stage.errors()
    assert error.row == 2 and "nested too deeply" in error.reason
    assert set(stage.records(ObjectKind.USER, ["u1", "u2", "u3"])) == {"u1", "u3"}
    stage.close()


def test_a_users_path_that_is_a_directory_is_a_file_error(tmp_path: Path) -> None:
    (tmp_path / "exports").mkdir()
    stage = _stage(tmp_path, SourceConfig(users=str(tmp_path / "exports")))
    (error,) = stage.errors()
    assert "is a directory" in error.reason and error.scope == "file"
    stage.close()


def test_a_duckdb_query_failing_midway_keeps_the_rows_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    from accoil_sync.sources import sql

    # One thread, so the failing row is reached after the batches before it (in parallel DuckDB may hit it
    # first, and then no row is kept -- the error is the same).
    connect = duckdb.connect
    monkeypatch.setattr(sql.duckdb, "connect", lambda *a, **k: connect(*a, **k, config={"threads": 1}))
    query = (
        "SELECT 'u' || i AS user_id, CASE WHEN i < 120000 THEN 10 ELSE error('disk gone') END AS score "
        "FROM range(200000) t(i)"
    )
    stage = _stage(tmp_path, SourceConfig(kind="duckdb", users=query))
    (error,) = stage.errors()
    assert error.scope == "rest" and "disk gone" in error.reason and "the query failed after" in error.reason
    stats = stage.stats.by_kind[ObjectKind.USER]
    assert 100_000 <= stats.objects < 120_000 and stats.file_errors == 1
    stage.close()


def test_a_mixed_type_value_from_sqlalchemy_is_one_bad_row(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "m.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE m (user_id TEXT, score)")
    rows = [(f"u{n}", n % 100) for n in range(300)]
    rows[150] = ("u150", "eighty")
    con.executemany("INSERT INTO m VALUES (?, ?)", rows)
    con.commit()
    con.close()
    cfg = SourceConfig(kind="sqlalchemy", users="SELECT * FROM m", url=f"sqlite:///{db}", chunk_size=100)
    stage = _stage(tmp_path, cfg)
    (error,) = stage.errors()
    assert (error.row, error.column, error.key) == (151, "score", "u150")
    assert "not a number: eighty" in error.reason
    assert stage.stats.by_kind[ObjectKind.USER].objects == 299
    stage.close()
