"""The floor under issue 18's full-score target: what the rollup's grain costs before any scoring.

The issue asks for daily per-user per-event counts kept as a rollup, and for a full score within 3x of a bare
``GROUP BY user_id, event`` over the same files. This measures, in one DuckDB process over the stream
``score_bench.py`` generates (best of ``--reps`` each), the steps no design at that grain can skip:

- the baseline: ``GROUP BY user_id, event`` (the bench's denominator);
- the counts at the rollup's grain, (UTC day, user, account, event), aggregated and not written;
- the same counts written once to a DuckDB file, keyed by integers (the cheapest layout tried: names stored
  apart), timed from a temporary table so only the write is counted;
- for scale, the (user, account, event) grain without days, which is what the baseline's groups are.

    python bench/score_floor.py --users 63000 --days 90      # about 10M events, the bench's stream
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The rollup's day: the same epoch arithmetic as ``accoil_sync.scoring.db.UTC_DAY`` (every generated time is
# finite, so its CASE is not needed here).
DAY = "CAST(make_timestamp(epoch_us(timestamp)) AS DATE)"


def best(con: duckdb.DuckDBPyConnection, sql: str, reps: int, after: str | None = None) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        con.execute(sql).fetchall()
        times.append(time.perf_counter() - start)
        if after:
            con.execute(after)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=60000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--events-per-active-day", type=float, default=6.0)
    parser.add_argument(
        "--dir", type=Path, default=None, help="generated events (shared with score_bench.py)"
    )
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    from accoil_sync.scoring.generate import StreamSpec, write_stream

    work = args.dir or Path(tempfile.mkdtemp(prefix="score-floor-"))
    spec = StreamSpec(users=args.users, days=args.days, events_per_active_day=args.events_per_active_day)
    events = work / f"events-{spec.users}x{spec.days}"
    if not events.exists():
        write_stream(spec, events)
    last = events / f"events-{(spec.start + timedelta(days=spec.days - 1)).isoformat()}.parquet"
    # The full phase's input in score_bench.py: every day but the last.
    files = sorted(str(p) for p in events.glob("*.parquet") if p != last)
    source = "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "])"

    rollup = Path(tempfile.mkdtemp(prefix="score-floor-db-")) / "floor.duckdb"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"ATTACH '{rollup}' AS r")
    rows = con.execute(f"SELECT count(*) FROM {source}").fetchall()[0][0]

    baseline = best(
        con, f"SELECT count(*) FROM (SELECT user_id, event, count(*) FROM {source} GROUP BY ALL)", args.reps
    )
    pair_grain = best(
        con,
        f"SELECT count(*) FROM (SELECT user_id, account_id, event, count(*), max(timestamp) "
        f"FROM {source} GROUP BY ALL)",
        args.reps,
    )
    day_grain = best(
        con,
        f"SELECT count(*) FROM (SELECT {DAY} AS day, user_id, account_id, event, count(*), max(timestamp) "
        f"FROM {source} GROUP BY ALL)",
        args.reps,
    )
    con.execute(
        f"CREATE TEMP TABLE counts AS SELECT {DAY} AS day, user_id, account_id, event, count(*) AS n, "
        f"max(timestamp) AS last_ts FROM {source} GROUP BY ALL"
    )
    for table, column in (("users", "user_id"), ("accounts", "account_id"), ("events", "event")):
        con.execute(
            f"CREATE TEMP TABLE {table} AS SELECT {column}, row_number() OVER ()::INTEGER AS id "
            f"FROM (SELECT DISTINCT {column} FROM counts)"
        )
    con.execute(
        "CREATE TEMP TABLE keyed AS SELECT c.day, u.id AS uid, a.id AS aid, e.id AS eid, c.n, c.last_ts "
        "FROM counts c JOIN users u USING (user_id) LEFT JOIN accounts a USING (account_id) "
        "JOIN events e USING (event)"
    )
    groups = con.execute("SELECT count(*) FROM keyed").fetchall()[0][0]
    written = best(
        con,
        "CREATE TABLE r.daily AS SELECT * FROM keyed",
        args.reps,
        after="DROP TABLE r.daily; CHECKPOINT r",
    )
    floor = day_grain + written
    print(
        json.dumps(
            {
                "events": rows,
                "day_grain_groups": groups,
                "seconds": {
                    "baseline_group_by_user_event": round(baseline, 3),
                    "user_account_event_grain": round(pair_grain, 3),
                    "day_grain_not_written": round(day_grain, 3),
                    "day_grain_rows_written": round(written, 3),
                },
                "vs_baseline": {
                    "user_account_event_grain": round(pair_grain / baseline, 2),
                    "day_grain_not_written": round(day_grain / baseline, 2),
                    "day_grain_aggregated_and_written": round(floor / baseline, 2),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
