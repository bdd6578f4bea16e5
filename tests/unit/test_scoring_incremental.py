"""The rollup: incremental runs equal a full rebuild, late events land in their day, SQL sources and presets."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from accoil_sync.errors import SourceError
from accoil_sync.scoring import Scorer, rollup_path
from accoil_sync.scoring.generate import StreamSpec, write_stream
from accoil_sync.scoring.rollup import Rollup
from tests.conftest import write
from tests.unit.test_scoring import AS_OF, NOW, SCORING, ago, events_csv, score, settings_for

SPEC = StreamSpec(users=150, days=40, end=AS_OF, seed=3)


def metric_rows(settings: object, as_of: date = AS_OF) -> list[tuple[object, ...]]:
    with Scorer(settings.source, settings.profiles, settings.state.directory) as scorer:  # type: ignore[attr-defined]
        scorer.run(as_of, NOW)
        mode = scorer.report.mode
        users = scorer.con.sql("SELECT * EXCLUDE (computed_at) FROM score_users ORDER BY user_id").fetchall()
        accounts = scorer.con.sql(
            "SELECT * EXCLUDE (computed_at) FROM score_accounts ORDER BY account_id"
        ).fetchall()
    return [mode, *users, *accounts]


def test_incremental_day_equals_a_full_rebuild(tmp_path: Path) -> None:
    days = [SPEC.start + timedelta(days=i) for i in range(SPEC.days)]
    write_stream(SPEC, Path("events"), "csv", days=days[:-1])
    settings = settings_for("events/*.csv")
    first = metric_rows(settings)
    assert first[0] == "full"
    write_stream(SPEC, Path("events"), "csv", days=days[-1:])  # the next day's file arrives
    incremental = metric_rows(settings)
    assert incremental[0] == "incremental"
    rollup_path(settings.state.directory).unlink()
    rebuilt = metric_rows(settings)
    assert rebuilt[0] == "full"
    assert incremental[1:] == rebuilt[1:]
    assert incremental[1:] != first[1:]


def test_late_events_in_a_new_file_land_in_their_own_day() -> None:
    events_csv([("u1", "A", "Report Viewed", ago(0)), ("u2", "A", "Report Viewed", ago(0))])
    settings = settings_for()
    users, _ = score(settings)
    assert users["u1"]["frequency"] == 1
    # Arrives after the run but happened 3 days ago: counted on that day, inside the window.
    events_csv([("u1", "A", "Project Created", ago(3))], "events/late.csv")
    users, accounts = score(settings)
    assert users["u1"]["raw"] == 3 + 9 and users["u1"]["frequency"] == 2
    assert accounts["A"]["frequency"] == 2


def test_a_changed_file_rebuilds_the_rollup() -> None:
    path = events_csv([("u1", "A", "Report Viewed", ago(0))])
    settings = settings_for()
    score(settings)
    path.write_text(path.read_text() + f"u1,A,Report Viewed,{ago(1)}\n")
    with Scorer(settings.source, settings.profiles, settings.state.directory) as scorer:
        scorer.run(AS_OF, NOW)
        assert scorer.report.mode == "full"
        raw = scorer.con.sql("SELECT raw FROM score_users WHERE user_id = 'u1'").fetchall()
    assert raw == [(6,)]  # read once, not added on top of the first read


def test_unchanged_files_read_nothing() -> None:
    events_csv([("u1", "A", "Report Viewed", ago(0))])
    settings = settings_for()
    score(settings)
    with Scorer(settings.source, settings.profiles, settings.state.directory) as scorer:
        scorer.run(AS_OF, NOW)
        assert (scorer.report.mode, scorer.report.rows, scorer.report.files) == ("incremental", 0, 0)


def _warehouse(path: str, loaded: list[str]) -> None:
    con = duckdb.connect(path)
    con.execute("CREATE SCHEMA IF NOT EXISTS prod")
    con.execute(
        'CREATE TABLE IF NOT EXISTS prod.tracks (user_id VARCHAR, event VARCHAR, "timestamp" TIMESTAMPTZ, '
        "uuid_ts TIMESTAMPTZ, received_at TIMESTAMPTZ)"
    )
    con.execute(
        'CREATE TABLE IF NOT EXISTS prod.groups (user_id VARCHAR, group_id VARCHAR, "timestamp" TIMESTAMPTZ)'
    )
    for row in loaded:
        con.execute(f"INSERT INTO prod.tracks VALUES {row}")
    con.close()


def test_segment_preset_reads_tracks_and_groups_by_load_time() -> None:
    _warehouse(
        "wh.duckdb",
        [
            f"('u1', 'Report Viewed', '{ago(0)}', '{ago(0, 10)}', '{ago(0)}')",
            f"('u2', 'Project Created', '{ago(1)}', '{ago(0, 10)}', '{ago(1)}')",
        ],
    )
    con = duckdb.connect("wh.duckdb")
    con.execute(f"INSERT INTO prod.groups VALUES ('u1', 'old', '{ago(30)}'), ('u1', 'A', '{ago(2)}')")
    con.close()
    extra = 'events_from = "duckdb"\ndatabase = "wh.duckdb"\npreset = "segment"\nwarehouse_schema = "prod"'
    settings = settings_for(extra=extra)
    users, accounts = score(settings)
    assert users["u1"]["account_id"] == "A" and set(accounts) == {"A"}
    assert (users["u1"]["raw"], users["u2"]["raw"]) == (3, 9)
    # A late event (timestamp 5 days ago) loaded after the last run is picked up by its uuid_ts.
    _warehouse("wh.duckdb", [f"('u1', 'Project Created', '{ago(5)}', '{ago(0, 12)}', '{ago(0, 12)}')"])
    with Scorer(settings.source, settings.profiles, settings.state.directory) as scorer:
        scorer.run(AS_OF, NOW)
        assert scorer.report.rows == 1
        raw = scorer.con.sql("SELECT raw FROM score_users WHERE user_id = 'u1'").fetchall()
    assert raw == [(12,)]


def test_duckdb_query_without_load_time_rereads_the_window() -> None:
    con = duckdb.connect("wh.duckdb")
    con.execute("CREATE TABLE ev (uid VARCHAR, acct VARCHAR, name VARCHAR, sent BIGINT)")
    epoch = int(NOW.timestamp())
    con.execute(f"INSERT INTO ev VALUES ('u1', 'A', 'Report Viewed', {epoch - 3600})")
    con.close()
    extra = (
        'events_from = "duckdb"\ndatabase = "wh.duckdb"\n'
        '[source.event_columns]\nuser_id = "uid"\naccount_id = "acct"\nevent = "name"\ntimestamp = "sent"'
    )
    settings = settings_for("SELECT * FROM ev", extra=extra)
    users, _ = score(settings)
    assert users["u1"]["raw"] == 3
    con = duckdb.connect("wh.duckdb")
    con.execute(f"INSERT INTO ev VALUES ('u1', 'A', 'Project Created', {(epoch - 2 * 86400) * 1000})")  # ms
    con.close()
    users, _ = score(settings)
    assert users["u1"]["raw"] == 12  # the re-read replaced the last window's days, nothing counted twice


def test_a_second_run_on_a_locked_rollup_is_a_clear_error() -> None:
    events_csv([("u1", "A", "Report Viewed", ago(0))])
    settings = settings_for()
    score(settings)
    holder = duckdb.connect(str(rollup_path(settings.state.directory)))
    try:
        import subprocess
        import sys

        code = (
            "from accoil_sync.config.settings import load_settings\n"
            "from accoil_sync.scoring import Scorer\n"
            "s = load_settings()\n"
            "Scorer(s.source, s.profiles, s.state.directory)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    finally:
        holder.close()
    assert "in use by another accoil-sync run" in done.stderr


def test_an_events_file_with_only_a_header_stops_the_run() -> None:
    write("events/e1.csv", "user_id,account_id,event,timestamp\n")
    with pytest.raises(SourceError, match="no usable event"):
        score(settings_for(scoring=SCORING))


def test_rudderstack_preset_over_sqlalchemy_asks_only_for_new_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    db = sqlite3.connect("wh.sqlite")
    db.execute("CREATE TABLE tracks (user_id TEXT, event TEXT, timestamp TEXT, uuid_ts TEXT)")
    db.execute("CREATE TABLE groups (user_id TEXT, group_id TEXT, timestamp TEXT)")
    db.execute(
        "INSERT INTO tracks VALUES ('u1', 'Report Viewed', '2026-11-30 09:00:00', '2026-11-30 10:00:00')"
    )
    db.execute("INSERT INTO groups VALUES ('u1', 'A', '2026-11-01 00:00:00')")
    db.commit()
    monkeypatch.setenv("ACCOIL_SYNC_SOURCE__URL", "sqlite:///wh.sqlite")
    settings = settings_for(extra='events_from = "sqlalchemy"\npreset = "rudderstack"')
    users, accounts = score(settings)
    assert users["u1"]["raw"] == 3 and set(accounts) == {"A"}
    # Loaded later, happened two days ago: fetched by its load time and counted on its own day.
    db.execute(
        "INSERT INTO tracks VALUES ('u1', 'Project Created', '2026-11-28 09:00:00', '2026-11-30 11:00:00')"
    )
    db.commit()
    with Scorer(settings.source, settings.profiles, settings.state.directory) as scorer:
        scorer.run(AS_OF, NOW)
        assert scorer.report.rows == 1  # the first row was not fetched again
        row = scorer.con.sql("SELECT raw, frequency FROM score_users WHERE user_id = 'u1'").fetchall()
    assert row == [(12, 2)]


def test_a_build_in_many_batches_equals_one_in_a_single_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    write_stream(SPEC, Path("events"), "csv")
    settings = settings_for("events/*.csv")
    single = metric_rows(settings)
    rollup_path(settings.state.directory).unlink()
    monkeypatch.setattr("accoil_sync.scoring.rollup.BATCH_BYTES", 1)  # one file per batch
    batched = metric_rows(settings)
    assert single[0] == batched[0] == "full"
    assert batched[1:] == single[1:]


def test_lifetime_totals_summed_in_several_passes_equal_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large rollup sums its lifetime totals in passes over disjoint users (100M events ran out of
    DuckDB's memory in one); the metrics are the same."""
    write_stream(SPEC, Path("events"), "csv")
    settings = settings_for("events/*.csv")
    monkeypatch.setattr("accoil_sync.scoring.rollup.BATCH_BYTES", 1)  # batched: lifetime summed after
    one = metric_rows(settings)
    rollup_path(settings.state.directory).unlink()
    monkeypatch.setattr("accoil_sync.scoring.rollup.LIFETIME_ROWS_PER_PASS", 500)
    with Scorer(settings.source, settings.profiles, settings.state.directory) as scorer:
        scorer.run(AS_OF, NOW)
        daily = scorer.con.sql("SELECT count(*) FROM r.daily").fetchall()[0][0]
    assert daily > 4 * 500  # several passes
    rollup_path(settings.state.directory).unlink()
    several = metric_rows(settings)
    assert several[1:] == one[1:]


def test_a_rollup_of_the_older_layout_is_rebuilt() -> None:
    """Version 1 kept names in the count tables; its tables are dropped and rebuilt from the source."""
    events_csv([("u1", "A", "Report Viewed", ago(0))])
    settings = settings_for()
    path = rollup_path(settings.state.directory)
    path.parent.mkdir(parents=True)
    old = duckdb.connect(str(path))
    old.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    old.execute("INSERT INTO meta VALUES ('version', '1')")
    old.execute(
        "CREATE TABLE daily (day DATE, user_id VARCHAR, account_id VARCHAR, event VARCHAR, n BIGINT, "
        "last_ts TIMESTAMPTZ)"
    )
    old.execute(
        "INSERT INTO daily VALUES ('2026-11-30', 'u1', 'A', 'Report Viewed', 99, '2026-11-30 09:00:00')"
    )
    old.close()
    with Scorer(settings.source, settings.profiles, settings.state.directory) as scorer:
        scorer.run(AS_OF, NOW)
        assert scorer.report.mode == "full"
        raw = scorer.con.sql("SELECT raw FROM score_users WHERE user_id = 'u1'").fetchall()
    assert raw == [(3,)]


def test_events_changing_between_the_two_reads_are_an_error_then_rebuilt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The names are read first, the counts second: a row appended in between (a new user) must not be
    counted as a missing user id, nor lost."""
    path = events_csv([("u1", "A", "Report Viewed", ago(0))])
    settings = settings_for()
    register = Rollup._register_names

    def then_append(self: Rollup, select: str) -> tuple[int, int, int, int]:
        counts = register(self, select)
        if "u9" not in path.read_text():
            path.write_text(path.read_text() + f"u9,B,Report Viewed,{ago(0)}\n")
        return counts

    monkeypatch.setattr(Rollup, "_register_names", then_append)
    with pytest.raises(SourceError, match="changed while they were read"):
        score(settings)
    users, accounts = score(settings)  # the file changed: rebuilt, both rows counted
    assert {k: v["raw"] for k, v in users.items()} == {"u1": 3, "u9": 3}
    assert set(accounts) == {"A", "B"}


def test_several_days_and_late_events_incrementally_equal_a_full_rebuild() -> None:
    """Three daily files arriving one run at a time, one more file of late events (known users on an
    earlier day, a new user and account inside the window) and emails: the last incremental run equals a
    rollup built from scratch over the same files."""
    spec = StreamSpec(users=150, days=40, end=AS_OF, seed=5, with_email=True)
    days = [spec.start + timedelta(days=i) for i in range(spec.days)]
    write_stream(spec, Path("events"), "csv", days=days[:-3])
    settings = settings_for("events/*.csv", extra='[source.event_columns]\nemail = "email"')
    assert metric_rows(settings, days[-4])[0] == "full"
    for i, day in enumerate(days[-3:]):
        write_stream(spec, Path("events"), "csv", days=[day])
        if i == 1:
            events_csv(
                [
                    ("user_1", "acc_late", "Project Created", ago(12)),
                    ("user_2", "acc_late", "Report Viewed", ago(3)),
                    ("late_user", "acc_late", "Teammate Invited", ago(2)),
                ],
                "events/late.csv",
            )
        incremental = metric_rows(settings, day)
        assert incremental[0] == "incremental"
    assert any(row[0] == "late_user" for row in incremental[1:])
    rollup_path(settings.state.directory).unlink()
    rebuilt = metric_rows(settings, days[-1])
    assert rebuilt[0] == "full"
    assert incremental[1:] == rebuilt[1:]


def test_bad_rows_in_later_batches_are_counted_once_and_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch of a first build on days the rollup does not hold yet goes straight in; its bad rows
    (no timestamp, far future, no user) are classified among that batch's rows only."""
    events_csv([("u1", "A", "Report Viewed", ago(3)), ("u2", "A", "Report Viewed", ago(2))])
    events_csv(
        [
            ("u1", "A", "Project Created", ago(1)),
            ("u3", "B", "Report Viewed", "not a time"),
            ("u4", "B", "Report Viewed", "2027-06-01T00:00:00Z"),
            ("", "B", "Report Viewed", ago(1)),
        ],
        "events/e2.csv",
    )
    settings = settings_for()
    single = metric_rows(settings)
    rollup_path(settings.state.directory).unlink()
    monkeypatch.setattr("accoil_sync.scoring.rollup.BATCH_BYTES", 1)  # one file per batch
    with Scorer(settings.source, settings.profiles, settings.state.directory) as scorer:
        scorer.run(AS_OF, NOW)
        assert scorer.report.rows == 6
        assert scorer.report.bad == {
            "missing user id": 1,
            "missing or unreadable timestamp": 1,
            "timestamp more than 24 h in the future": 1,
        }
    rollup_path(settings.state.directory).unlink()
    assert metric_rows(settings)[1:] == single[1:]


def _lifetime_by_name(settings: object) -> list[tuple[object, ...]]:
    path = rollup_path(settings.state.directory)  # type: ignore[attr-defined]
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql(
            "SELECT u.user_id, a.account_id, e.event, l.first_day, l.last_ts, l.n FROM lifetime l "
            "JOIN users u USING (uid) LEFT JOIN accounts a USING (aid) JOIN events e USING (eid) ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()


def test_late_events_for_known_keys_and_back_fills_equal_a_fresh_build() -> None:
    """Late events for (user, account, event) keys the rollup already holds, inside and outside the
    window, and one for a new key: the lifetime totals the incremental runs keep equal a fresh build's, and
    so do the metrics of the newest day and of a back-filled earlier day."""
    days = [SPEC.start + timedelta(days=i) for i in range(SPEC.days)]
    write_stream(SPEC, Path("events"), "csv", days=days[:-2])
    settings = settings_for("events/*.csv")
    assert metric_rows(settings, days[-3])[0] == "full"
    write_stream(SPEC, Path("events"), "csv", days=days[-2:-1])
    known = duckdb.sql(
        "SELECT user_id, account_id, event FROM read_csv('events/*.csv', all_varchar = true) "
        "WHERE account_id IS NOT NULL ORDER BY ALL LIMIT 3"
    ).fetchall()
    assert len(known) == 3
    late = [(u, a, e, ago(d)) for (u, a, e), d in zip(known, (3, 20, 5), strict=True)]
    events_csv([*late, (known[0][0], known[0][1], "Search Performed", ago(4))], "events/late.csv")
    incremental = metric_rows(settings, days[-2])
    assert incremental[0] == "incremental"
    back_filled = metric_rows(settings, days[-6])
    lifetime = _lifetime_by_name(settings)
    rollup_path(settings.state.directory).unlink()
    assert metric_rows(settings, days[-2])[1:] == incremental[1:]
    assert _lifetime_by_name(settings) == lifetime
    assert metric_rows(settings, days[-6])[1:] == back_filled[1:]
