"""Names in the rollup: user ids, account ids and event names get integer ids, once each.

Persisting millions of daily rows with their three names cost several times more than with integer ids,
so new events are read twice: once here for the names they hold, once for the counts by id.
"""

from __future__ import annotations

from datetime import date

import duckdb

from accoil_sync.errors import SourceError
from accoil_sync.scoring.db import UTC_DAY, do

# (table, id column, name column) of each name dictionary.
_NAMES = (("users", "uid", "user_id"), ("accounts", "aid", "account_id"), ("events", "eid", "event"))


def register_names(
    con: duckdb.DuckDBPyConnection, select: str
) -> tuple[tuple[int, int, int, int], list[date]]:
    """Give every new user id, account id and event name in ``select`` its integer id (one read, the
    names and days grouped apart); returns the rows read, those with a user, an account, an event,
    and the days the rows fall on."""
    try:
        do(
            con,
            f"""
            CREATE OR REPLACE TEMP TABLE names AS
            SELECT user_id, account_id, event, day, GROUPING(user_id, account_id, event, day) AS g,
                   count(*) AS n
            FROM (SELECT user_id, account_id, event, {UTC_DAY} AS day FROM ({select}))
            GROUP BY GROUPING SETS ((user_id), (account_id), (event), (day))
            """,
        )
    except duckdb.Error as exc:
        raise SourceError(f"reading the events failed: {str(exc).splitlines()[0]}") from None
    for table, id_col, name in _NAMES:
        do(
            con,
            f"""
            INSERT INTO r.{table}
            SELECT (SELECT coalesce(max({id_col}), 0) FROM r.{table}) + row_number() OVER (), {name}
            FROM (SELECT {name} FROM names WHERE {name} IS NOT NULL) ANTI JOIN r.{table} USING ({name})
            """,
        )
    # GROUPING(...) has a bit set for each column the row is not grouped by: 7 = by user_id alone,
    # 11 by account_id, 13 by event, 14 by day.
    counts = do(
        con,
        "SELECT coalesce(sum(n) FILTER (WHERE g = 7), 0), "
        "coalesce(sum(n) FILTER (WHERE g = 7 AND user_id IS NOT NULL), 0), "
        "coalesce(sum(n) FILTER (WHERE g = 11 AND account_id IS NOT NULL), 0), "
        "coalesce(sum(n) FILTER (WHERE g = 13 AND event IS NOT NULL), 0) FROM names",
    )[0]
    days = [row[0] for row in do(con, "SELECT day FROM names WHERE g = 14 AND day IS NOT NULL")]
    do(con, "DROP TABLE names")
    return (int(counts[0]), int(counts[1]), int(counts[2]), int(counts[3])), days


def check_totals(con: duckdb.DuckDBPyConnection, table: str, expected: tuple[int, int, int, int]) -> None:
    """The daily counts must hold every row the names were taken from, each name mapped: a source that
    changed between the two reads would otherwise lose rows, or count a new name as a missing one."""
    got = do(
        con,
        f"SELECT coalesce(sum(n), 0), coalesce(sum(n) FILTER (WHERE uid IS NOT NULL), 0), "
        f"coalesce(sum(n) FILTER (WHERE aid IS NOT NULL), 0), "
        f"coalesce(sum(n) FILTER (WHERE eid IS NOT NULL), 0) FROM {table}",
    )[0]
    if tuple(int(v) for v in got) != expected:
        raise SourceError(
            "the events changed while they were read (rows or names differ between two reads); "
            "nothing was stored, run again"
        )
