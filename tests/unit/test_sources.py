"""Sources: every bad row is reported with file, row, column and reason, and the good rows still go on."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from accoil_sync.config.models import ProfileConfig, SourceConfig
from accoil_sync.sources import Stage, load_stage
from accoil_sync.traits import Metric, ObjectKind
from tests.conftest import write

HEADER = (
    "user_id,email,score_name,score,segments,activation,adoption_recent,adoption_ever,last_active,frequency\n"
)
GOOD = "u1,A@X.io,Default,72,Most Engaged;Champions,90,40,60,2026-11-20T09:15:00Z,4\n"


def stage_for(tmp_path: Path, profiles: list[ProfileConfig] | None = None, **source: object) -> Stage:
    cfg = SourceConfig(**source)  # type: ignore[arg-type]
    stage = Stage(tmp_path / "stage", profiles or [ProfileConfig(name="Default")], "t")
    return load_stage(stage, cfg)


def reasons(stage: Stage) -> dict[int | None, tuple[str | None, str]]:
    return {e.row: (e.column, e.reason) for e in stage.errors()}


def test_each_kind_of_bad_row_is_reported_and_good_rows_kept(tmp_path: Path) -> None:
    write(
        tmp_path / "users.csv",
        HEADER
        + GOOD
        + (
            ",nokey@x.io,Default,50,,,,,,\n"  # line 3: missing key
            "u3,,Default,140,,,,,,\n"  # line 4: score out of range
            "u4,,Default,50,,,,,not-a-date,\n"  # line 5: unparsable date
            "u5,,Default,NaN,,,,,,\n"  # line 6: NaN
            'u6,,Default,50,"{""a"": 1}",,,,,\n'  # line 7: segments not a list
            "u7,,Default,50,,-3,,,,\n"  # line 8: negative percentage
            "u8,,Default,50,,,,,,9\n"  # line 9: frequency above the window
            "u9,,Nope,50,,,,,,\n"  # line 10: unknown profile
            "u10,,Default,50,,,,,1960-01-01,\n"  # line 11: before 1970
            "u11,,Default,50,,,,,2099-01-01,\n"  # line 12: future
            "u12,,Default,50,,,,,,2.5\n"  # line 13: fractional count
            "u13,,Default,50,,,,,,\n"  # line 14: good (sparse)
        ),
    )
    stage = stage_for(tmp_path, users="users.csv")
    got = reasons(stage)
    assert got[3] == ("user_id", "missing key")
    assert got[4] == ("score", "140.0 is above 100")
    assert got[5][0] == "last_active" and "not a date" in got[5][1]
    assert got[6] == ("score", "NaN or infinity is not allowed")
    assert got[7] == ("segments", "expected a list of names, got a JSON object")
    assert got[8][0] == "activation" and "below 0" in got[8][1]
    assert got[9][0] == "frequency" and "window of 7 days" in got[9][1]
    assert got[10][0] == "score_name" and "Nope" in got[10][1]
    assert got[11] == ("last_active", "before 1970")
    assert got[12] == ("last_active", "in the future")
    assert got[13][0] == "frequency" and "whole number" in got[13][1]
    assert all(e.file == "users.csv" for e in stage.errors())
    stats = stage.stats.by_kind[ObjectKind.USER]
    assert (stats.rows, stats.valid, stats.invalid, stats.objects) == (13, 2, 11, 2)
    records = stage.records(ObjectKind.USER, ["u1", "u13"])
    u1 = records["u1"].metrics["Default"]
    assert u1[Metric.SCORE] == 72 and u1[Metric.SEGMENTS] == ("Champions", "Most Engaged")
    assert records["u1"].email == "a@x.io"
    assert records["u13"].metrics["Default"] == {Metric.SCORE: 50}
    stage.close()


def test_duplicate_keys_last_row_wins_and_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "users.csv", HEADER + GOOD + "u1,,Default,10,,,,,,\n" + "u2,,Default,5,,,,,,\n")
    stage = stage_for(tmp_path, users="users.csv")
    assert stage.stats.by_kind[ObjectKind.USER].duplicates == 1
    assert stage.duplicates(ObjectKind.USER) == [("u1", "Default", 2, ["users.csv:2", "users.csv:3"])]
    assert stage.records(ObjectKind.USER, ["u1"])["u1"].metrics["Default"] == {Metric.SCORE: 10}


def test_several_profiles_merge_into_one_object(tmp_path: Path) -> None:
    write(tmp_path / "users.csv", HEADER + GOOD + "u1,,product usage,33,,,,,,\n")
    profiles = [ProfileConfig(name="Default"), ProfileConfig(name="product usage", window_days=30)]
    stage = stage_for(tmp_path, profiles, users="users.csv")
    record = stage.records(ObjectKind.USER, ["u1"])["u1"]
    assert set(record.metrics) == {"Default", "ProductUsage"}
    assert record.traits()["Accoil_ProductUsage_Score"] == 33


def test_ragged_rows_and_bom_and_mapping(tmp_path: Path) -> None:
    (tmp_path / "u.csv").write_bytes("\ufeffid;pts\nu1;10\nu2\nu3;30;extra\nu4;40\n".encode())
    stage = stage_for(tmp_path, users="u.csv", csv_delimiter=";", columns={"user_id": "id", "score": "pts"})
    got = reasons(stage)
    assert set(got) == {3, 4}
    assert "expected 2 fields, found 1" in got[3][1]
    assert stage.stats.by_kind[ObjectKind.USER].valid == 2
    assert set(stage.records(ObjectKind.USER, ["u1", "u4"])) == {"u1", "u4"}


def test_wrong_delimiter_gets_a_hint(tmp_path: Path) -> None:
    write(tmp_path / "u.csv", "user_id;score\nu1;10\n")
    stage = stage_for(tmp_path, users="u.csv")
    (error,) = stage.errors()
    assert "';'-delimited" in error.reason and error.row is None


def test_jsonl_broken_line_and_list_segments(tmp_path: Path) -> None:
    lines = [
        json.dumps({"user_id": "u1", "score": 50, "segments": ["Most Engaged", "A;B"]}),
        "{broken",
        json.dumps({"user_id": "u2", "score": 20, "segments": 5}),
        json.dumps({"user_id": "u3", "score": float("nan")}),
        json.dumps({"user_id": "u4", "score": 61.5, "segments": "X;Y"}),
    ]
    (tmp_path / "u.jsonl").write_text("\n".join(lines) + "\n")
    stage = stage_for(tmp_path, users="u.jsonl")
    got = reasons(stage)
    assert set(got) == {2, 3, 4}
    assert got[3][0] == "segments"
    records = stage.records(ObjectKind.USER, ["u1", "u4"])
    assert records["u1"].metrics["Default"][Metric.SEGMENTS] == ("A;B", "Most Engaged")
    assert records["u4"].metrics["Default"][Metric.SEGMENTS] == ("X", "Y")


def test_parquet_typed_columns_and_glob(tmp_path: Path) -> None:
    for i in range(2):
        table = pa.table(
            {
                "user_id": [f"p{i}a", f"p{i}b"],
                "score": pa.array([10.0 + i, 200.0]),
                "segments": pa.array([["S1"], []], pa.list_(pa.string())),
                "last_active": pa.array([1795166100, 1795166100], pa.int64()),
                "frequency": pa.array([3, 1], pa.int32()),
            }
        )
        pq.write_table(table, tmp_path / f"part-{i}.parquet")
    stage = stage_for(tmp_path, users="part-*.parquet")
    assert [(e.file, e.row, e.column) for e in stage.errors()] == [
        ("part-0.parquet", 2, "score"),
        ("part-1.parquet", 2, "score"),
    ]
    record = stage.records(ObjectKind.USER, ["p1a"])["p1a"]
    assert record.metrics["Default"][Metric.LAST_ACTIVE] == "2026-11-20T09:15:00Z"
    assert record.metrics["Default"][Metric.SEGMENTS] == ("S1",)


def test_duckdb_query_source(tmp_path: Path) -> None:
    write(tmp_path / "raw.csv", "uid,pts\nu1,10\nu2,20\n")
    stage = stage_for(
        tmp_path, kind="duckdb", users="SELECT uid AS user_id, pts AS score FROM read_csv('raw.csv')"
    )
    assert stage.stats.by_kind[ObjectKind.USER].valid == 2


def test_sqlalchemy_source(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "m.db")
    db.execute("CREATE TABLE accounts (account_id TEXT, score REAL, active_users INT, total_users INT)")
    db.executemany("INSERT INTO accounts VALUES (?, ?, ?, ?)", [("a1", 50, 2, 3), ("a2", 60, 5, 3)])
    db.commit()
    db.close()
    stage = stage_for(
        tmp_path,
        kind="sqlalchemy",
        url=f"sqlite:///{tmp_path / 'm.db'}",
        accounts="SELECT * FROM accounts ORDER BY account_id",
    )
    (error,) = stage.errors()
    assert (error.row, error.column) == (2, "active_users")
    assert "more than total_users" in error.reason


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    from accoil_sync.errors import SourceError

    with pytest.raises(SourceError, match="no file matches"):
        stage_for(tmp_path, users="nope/*.csv")


def test_records_read_back_exact_values_through_the_staged_json_documents(tmp_path: Path) -> None:
    """Records come back from DuckDB as one JSON document per object: every double must survive the trip
    bit for bit, whole numbers must be ints, text must survive escaping, and the last row's attributes win
    even when they are empty."""
    import random

    rng = random.Random(7)
    values = [rng.uniform(0, 100) for _ in range(300)] + [0.1, 33.333333333333336, 99.99999999999999, 5e-324]
    rows = "".join(f"f{n},,Default,{v!r},,,,,,\n" for n, v in enumerate(values))
    odd = 'u"1,Q\\"x@y.io,Default,72.0,"Quote ""q"";Back\\\\slash;Ünï",,,,,\n'
    write(
        tmp_path / "users.csv", HEADER + rows + odd + "u9,a@x.io,Default,1,,,,,,\nu9,,product usage,2,,,,,,\n"
    )
    profiles = [ProfileConfig(name="Default"), ProfileConfig(name="product usage")]
    stage = stage_for(tmp_path, profiles, users="users.csv")
    assert stage.errors() == []
    records = stage.records(ObjectKind.USER, [f"f{n}" for n in range(len(values))] + ['u"1', "u9"])
    for n, v in enumerate(values):
        got = records[f"f{n}"].metrics["Default"][Metric.SCORE]
        assert got == v and type(got) is float, (n, v, got)
    odd_record = records['u"1']
    assert odd_record.email == 'q\\"x@y.io'
    score = odd_record.metrics["Default"][Metric.SCORE]
    assert score == 72 and type(score) is int
    assert odd_record.metrics["Default"][Metric.SEGMENTS] == ("Back\\\\slash", 'Quote "q"', "Ünï")
    both = records["u9"]
    assert both.metrics == {"Default": {Metric.SCORE: 1}, "ProductUsage": {Metric.SCORE: 2}}
    assert all(type(m) is Metric for values_ in both.metrics.values() for m in values_)
    assert both.email is None  # the later row (product usage) had no email: it wins
    stage.close()
