"""The rollup: daily per-user per-event counts in a DuckDB file under the state directory.

Scores only ever need counts per (day, user, account, event) and the latest time, so a run reads only what
arrived since the last one and folds it into the days it touches:

- files: a file is read once; a file that changed or vanished rebuilds the rollup (counts cannot be
  subtracted back out), new files are added -- whatever the dates of their events, so late events land
  in their own day;
- SQL with a load-time column (``event_columns.loaded_at``, the presets' ``uuid_ts``): rows loaded after
  the watermark;
- SQL without one: the last ``lookback_days`` of event time are re-read and replace those days.

Everything happens in one transaction, so an interrupted run leaves the previous rollup intact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from accoil_sync.config.models import SourceConfig
from accoil_sync.errors import SourceError
from accoil_sync.scoring.db import UTC_DAY, connect, do
from accoil_sync.scoring.events import (
    FileInfo,
    canonical_select,
    files_sql,
    list_files,
    query_sql,
    remote_filter,
    source_fingerprint,
    sqlalchemy_chunks,
)
from accoil_sync.scoring.names import check_totals, register_names

log = logging.getLogger(__name__)

# Bump when the rollup's tables or their meaning change: an older file is rebuilt from the source.
ROLLUP_VERSION = "2"  # 2: names stored once, the counts keyed by integer ids
FUTURE_SKEW = timedelta(hours=24)
BATCH_BYTES = 96 << 20  # of new files per pass: about 9M events of Parquet, fewer of CSV
# Daily rows per pass when the lifetime totals are summed again: the aggregate's groups (about an eighth of
# the rows in a generated stream) must stay well inside DuckDB's memory limit, which it did not spill past
# at 100M events (50M daily rows in one pass: out of memory at 512 MB).
LIFETIME_ROWS_PER_PASS = 10_000_000

# Daily rows are written in day order, so a window's scan skips the row groups of older days, and by event
# within a day, so the scan of a profile's scored events skips the row groups of other events once a day
# spans several row groups (100M events: the 30-day profile's window scan 0.43-0.66 s instead of 0.73-0.93 s).
DAILY_ORDER = "day, eid"

# User ids, account ids and event names are stored once, in ``users``/``accounts``/``events``, and the
# counts refer to them by integer (uid, aid, eid): persisting 5.2M daily rows with their three names cost
# 3.6 s of a 10M-event build, the same rows keyed by integers 0.4 s, and grouping by integers is cheaper too.
# An id is never reused or renumbered; ``aid`` is NULL for an event without an account.
_TABLES = """
CREATE TABLE IF NOT EXISTS r.daily (
  day DATE, uid INTEGER, aid INTEGER, eid INTEGER, n BIGINT, last_ts TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS r.lifetime (
  uid INTEGER, aid INTEGER, eid INTEGER, first_day DATE, last_ts TIMESTAMPTZ, n BIGINT);
CREATE TABLE IF NOT EXISTS r.users (uid INTEGER, user_id VARCHAR);
CREATE TABLE IF NOT EXISTS r.accounts (aid INTEGER, account_id VARCHAR);
CREATE TABLE IF NOT EXISTS r.events (eid INTEGER, event VARCHAR);
CREATE TABLE IF NOT EXISTS r.files (path VARCHAR, size BIGINT, mtime_ns BIGINT);
CREATE TABLE IF NOT EXISTS r.emails (uid INTEGER, email VARCHAR, ts TIMESTAMPTZ);
"""
_DATA_TABLES = ("daily", "lifetime", "users", "accounts", "events", "files", "emails")


@dataclass(slots=True)
class IngestReport:
    mode: str = "incremental"  # "full" when the rollup was (re)built
    rows: int = 0
    bad: dict[str, int] = field(default_factory=dict)
    files: int = 0


class Rollup:
    """Owns one DuckDB connection with the rollup attached as ``r`` (and a DuckDB source as ``src``)."""

    def __init__(self, path: Path, cfg: SourceConfig, memory_limit: str = "512MB") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.cfg = cfg
        self.con = connect(memory_limit, path.parent / "duckdb-tmp")
        try:
            do(self.con, f"ATTACH '{_lit(str(path))}' AS r")
        except duckdb.Error as exc:
            self.con.close()
            if "lock" in str(exc).lower():
                raise SourceError(
                    f"the events rollup {path} is in use by another accoil-sync run; try again when it ends"
                ) from None
            raise SourceError(f"cannot open the events rollup {path}: {exc}") from None
        if cfg.events_from == "duckdb" and cfg.database:
            try:
                do(self.con, f"ATTACH '{_lit(cfg.database)}' AS src (READ_ONLY)")
            except duckdb.Error as exc:
                self.close()
                raise SourceError(f"source.database cannot be opened: {exc}") from None
        do(self.con, "CREATE TABLE IF NOT EXISTS r.meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        if self._meta("version") != ROLLUP_VERSION:
            # An older layout's tables have other columns: dropped, rebuilt from the source.
            for table in _DATA_TABLES:
                do(self.con, f"DROP TABLE IF EXISTS r.{table}")
        do(self.con, _TABLES)
        if self._meta("version") != ROLLUP_VERSION:
            self.reset()

    # ------------------------------------------------------------------------------------------ meta

    def _meta(self, key: str) -> str | None:
        rows = do(self.con, "SELECT value FROM r.meta WHERE key = ?", [key])
        return str(rows[0][0]) if rows else None

    def _set_meta(self, key: str, value: str) -> None:
        do(self.con, "INSERT OR REPLACE INTO r.meta VALUES (?, ?)", [key, value])

    def reset(self) -> None:
        for table in (*_DATA_TABLES, "meta"):
            do(self.con, f"DELETE FROM r.{table}")
        self._set_meta("version", ROLLUP_VERSION)

    def empty(self) -> bool:
        return bool(do(self.con, "SELECT count(*) FROM (SELECT 1 FROM r.daily LIMIT 1)")[0][0] == 0)

    # ---------------------------------------------------------------------------------------- ingest

    def ingest(self, lookback_days: int = 30, now: datetime | None = None) -> IngestReport:
        """Bring the rollup up to date with the source; one transaction."""
        cfg = self.cfg
        now = now or datetime.now(UTC)
        report = IngestReport()
        do(self.con, "BEGIN TRANSACTION")
        try:
            if self._meta("source") != source_fingerprint(cfg):
                self.reset()
                self._set_meta("source", source_fingerprint(cfg))
            if self.empty():
                report.mode = "full"
            if cfg.events_from == "files":
                self._ingest_files(report, now)
            elif cfg.events_from == "duckdb":
                self._ingest_duckdb(report, lookback_days, now)
            else:
                self._ingest_sqlalchemy(report, lookback_days, now)
            do(self.con, "COMMIT")
        except BaseException:
            do(self.con, "ROLLBACK")
            raise
        if report.bad:
            log.warning(
                "events: %s row(s) skipped: %s",
                sum(report.bad.values()),
                ", ".join(f"{reason} x{n}" for reason, n in sorted(report.bad.items())),
            )
        log.info("events rollup (%s): %d new event row(s) read", report.mode, report.rows)
        return report

    def _ingest_files(self, report: IngestReport, now: datetime) -> None:
        files = list_files(self.cfg)
        known = {r[0]: (r[1], r[2]) for r in do(self.con, "SELECT * FROM r.files")}
        current = {f.path: (f.size, f.mtime_ns) for f in files}
        if any(path not in current or current[path] != seen for path, seen in known.items()):
            log.info("events: a file already read changed or disappeared; rebuilding the rollup")
            self.reset()
            self._set_meta("source", source_fingerprint(self.cfg))
            report.mode = "full"
            known = {}
        new = [f for f in files if f.path not in known]
        report.files = len(new)
        if not new:
            return
        # New files are read in batches of about BATCH_BYTES, so memory is bounded by the batch, not by the
        # number of files (daily files of one stream mostly touch days of their own); with several batches
        # the lifetime totals are summed once at the end instead of after each.
        batches = _batches(new, BATCH_BYTES)
        for batch in batches:
            relation = files_sql(batch, self.cfg)
            select = canonical_select(self.con, relation, self.cfg, "source.events")
            self._absorb(select, report, now, lifetime=len(batches) == 1)
            self.con.executemany(
                "INSERT INTO r.files VALUES (?, ?, ?)", [[f.path, f.size, f.mtime_ns] for f in batch]
            )
        if len(batches) > 1:
            self._rebuild_lifetime()

    def _watermark_filter(self, lookback_days: int) -> tuple[str, str | None]:
        """(WHERE clause over canonical columns, days to replace from) for a SQL source."""
        mark = self._meta("watermark")
        if self._has_load_time():
            return (f"loaded > TIMESTAMPTZ '{mark}'" if mark else "true"), None
        last = do(self.con, "SELECT max(day) FROM r.daily")[0][0]
        if last is None:
            return "true", None
        tail = (last - timedelta(days=lookback_days - 1)).isoformat()
        return f"ts >= TIMESTAMPTZ '{tail} 00:00:00+00'", tail

    def _has_load_time(self) -> bool:
        return self.cfg.preset is not None or self.cfg.event_columns.loaded_at is not None

    def _ingest_duckdb(self, report: IngestReport, lookback_days: int, now: datetime) -> None:
        relation = query_sql(self.cfg)
        do(self.con, "USE src" if self.cfg.database else "USE memory")
        try:
            select = canonical_select(self.con, relation, self.cfg, "source.events")
            where, tail = self._watermark_filter(lookback_days)
            if tail is not None:
                do(self.con, "DELETE FROM r.daily WHERE day >= ?", [tail])
            self._absorb(f"SELECT * FROM ({select}) WHERE {where}", report, now, lifetime=tail is None)
            if tail is not None:
                self._rebuild_lifetime()
        finally:
            do(self.con, "USE memory")

    def _ingest_sqlalchemy(self, report: IngestReport, lookback_days: int, now: datetime) -> None:
        mark = self._meta("watermark")
        since = datetime.fromisoformat(mark) if mark and self._has_load_time() else None
        _, tail = self._watermark_filter(lookback_days)
        if tail is not None:
            do(self.con, "DELETE FROM r.daily WHERE day >= ?", [tail])
        tail_time = datetime.fromisoformat(f"{tail}T00:00:00+00:00") if tail is not None else None
        where, params = remote_filter(self.cfg, since, tail_time)
        for chunk in sqlalchemy_chunks(self.cfg, query_sql(self.cfg), self.cfg.chunk_size, where, params):
            if chunk.num_rows == 0:
                continue
            self.con.register("chunk", chunk)
            try:
                select = canonical_select(self.con, "SELECT * FROM chunk", self.cfg, "source.events")
                self._absorb(select, report, now, lifetime=tail is None)
            finally:
                self.con.unregister("chunk")
        if tail is not None:
            self._rebuild_lifetime()

    def _rebuild_lifetime(self) -> None:
        """After days were replaced (their old counts are gone), the lifetime totals are summed again --
        in passes over disjoint sets of users, so the aggregate's memory is bounded by a pass."""
        do(self.con, "DELETE FROM r.lifetime")
        rows = int(do(self.con, "SELECT count(*) FROM r.daily")[0][0])
        passes = max(1, -(-rows // LIFETIME_ROWS_PER_PASS))
        for part in range(passes):
            where = f"WHERE uid % {passes} = {part}" if passes > 1 else ""
            do(
                self.con,
                "INSERT INTO r.lifetime SELECT uid, aid, eid, min(day), max(last_ts), "
                f"sum(n)::BIGINT FROM r.daily {where} GROUP BY ALL",
            )

    def _absorb(self, select: str, report: IngestReport, now: datetime, lifetime: bool = True) -> None:
        """Aggregate the new events per (day, user, account, event) and merge them into the days they touch,
        and into the lifetime totals per (user, account, event) unless the caller rebuilds those.

        The input is read twice: once for the names it holds (new ones get ids), once for the daily counts
        by id. Bad rows are classified inside the second read's aggregate."""
        email = self.cfg.event_columns.email is not None and self.cfg.preset is None
        expected, days = self._register_names(select)
        # Bad rows are classified on the aggregated columns (a NULL key, a NULL or out-of-range day), so the
        # same rule serves both paths below. A NULL id is a NULL name: every name read has an id by now.
        bad = (
            "CASE WHEN uid IS NULL THEN 'missing user id' WHEN eid IS NULL THEN 'missing event name' "
            "WHEN day IS NULL THEN 'missing or unreadable timestamp' "
            # A group with a time past the limit is dropped whole: the stage would reject its last_active.
            f"WHEN last_ts > TIMESTAMPTZ '{(now + FUTURE_SKEW).strftime('%Y-%m-%d %H:%M:%S+00')}' "
            "THEN 'timestamp more than 24 h in the future' "
            "WHEN day < DATE '1970-01-01' THEN 'timestamp before 1970' END"
        )
        aggregate = f"""
            SELECT {UTC_DAY} AS day, u.uid, a.aid, e.eid, count(*) AS n, max(ts) AS last_ts
                   {", max(loaded) AS loaded" if self._has_load_time() else ""}
                   {", max_by(email, ts) FILTER (WHERE email IS NOT NULL) AS email" if email else ""}
            FROM ({select}) s
            LEFT JOIN r.users u ON u.user_id = s.user_id
            LEFT JOIN r.accounts a ON a.account_id = s.account_id
            LEFT JOIN r.events e ON e.event = s.event
            GROUP BY ALL
        """
        listed = ", ".join(f"DATE '{d.isoformat()}'" for d in days)
        in_days = f"day IN ({listed})" if days else "false"
        was_empty = self.empty()
        if (
            not email
            and not self._has_load_time()
            and (was_empty or not do(self.con, f"SELECT 1 FROM r.daily WHERE {in_days} LIMIT 1"))
        ):
            # Only days the rollup does not hold yet (a first build's batches, a new daily file): the
            # counts go straight in, nothing to merge.
            # (On an empty rollup every row is new: no day list to test per row.)
            self._absorb_new_days(aggregate, bad, report, expected, "true" if was_empty else in_days)
            if lifetime and was_empty:
                self._rebuild_lifetime()
            elif lifetime:
                self._merge_lifetime(
                    "SELECT uid, aid, eid, min(day) AS first_day, max(last_ts) AS last_ts, sum(n)::BIGINT AS n "
                    f"FROM r.daily WHERE {in_days} GROUP BY ALL"
                )
            return
        try:
            do(self.con, f"CREATE OR REPLACE TEMP TABLE inc AS SELECT {bad} AS bad, * FROM ({aggregate})")
        except duckdb.Error as exc:
            raise SourceError(f"reading the events failed: {str(exc).splitlines()[0]}") from None
        check_totals(self.con, "inc", expected)
        totals = do(self.con, "SELECT bad, sum(n) FROM inc GROUP BY bad")
        for reason, n in totals:
            report.rows += int(n)
            if reason is not None:
                report.bad[reason] = report.bad.get(reason, 0) + int(n)
        mark = do(self.con, "SELECT max(loaded) FROM inc")[0][0] if self._has_load_time() else None
        if mark is not None:
            old = self._meta("watermark")
            new = mark.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
            if old is None or new > old:
                self._set_meta("watermark", new)
        cols = "day, uid, aid, eid, n, last_ts"
        increment = (
            "SELECT uid, aid, eid, min(day) AS first_day, max(last_ts) AS last_ts, sum(n)::BIGINT AS n "
            "FROM inc WHERE bad IS NULL GROUP BY ALL"
        )
        if self.empty():
            do(
                self.con,
                f"INSERT INTO r.daily SELECT {cols} FROM inc WHERE bad IS NULL ORDER BY {DAILY_ORDER}",
            )
            if lifetime:
                do(self.con, f"INSERT INTO r.lifetime {increment}")
        else:
            if lifetime:
                self._merge_lifetime(increment)
            do(
                self.con,
                "CREATE OR REPLACE TEMP TABLE touched AS SELECT DISTINCT day FROM inc WHERE bad IS NULL",
            )
            do(
                self.con,
                f"""
                CREATE OR REPLACE TEMP TABLE merged AS
                SELECT day, uid, aid, eid, sum(n)::BIGINT AS n, max(last_ts) AS last_ts FROM (
                  SELECT {cols} FROM r.daily WHERE day IN (SELECT day FROM touched)
                  UNION ALL SELECT {cols} FROM inc WHERE bad IS NULL)
                GROUP BY ALL
                """,
            )
            do(self.con, "DELETE FROM r.daily WHERE day IN (SELECT day FROM touched)")
            do(self.con, f"INSERT INTO r.daily SELECT {cols} FROM merged ORDER BY {DAILY_ORDER}")
            do(self.con, "DROP TABLE merged")
            do(self.con, "DROP TABLE touched")
        if email:
            do(
                self.con,
                """
                CREATE OR REPLACE TEMP TABLE mails AS
                SELECT uid, max_by(email, ts) AS email, max(ts) AS ts FROM (
                  SELECT uid, email, ts FROM r.emails
                  UNION ALL SELECT uid, email, last_ts FROM inc WHERE bad IS NULL AND email IS NOT NULL)
                GROUP BY uid
                """,
            )
            do(self.con, "DELETE FROM r.emails")
            do(self.con, "INSERT INTO r.emails SELECT * FROM mails")
            do(self.con, "DROP TABLE mails")
        do(self.con, "DROP TABLE inc")

    def _merge_lifetime(self, increment: str) -> None:
        """Fold ``increment`` (uid, aid, eid, first_day, last_ts, n) into the lifetime totals: only the
        users with new events have lifetime rows to change, so theirs alone are rewritten."""
        do(self.con, f"CREATE OR REPLACE TEMP TABLE life_inc AS {increment}")
        do(self.con, "CREATE OR REPLACE TEMP TABLE movers AS SELECT DISTINCT uid FROM life_inc")
        do(
            self.con,
            """
            CREATE OR REPLACE TEMP TABLE life_new AS
            SELECT uid, aid, eid, min(first_day) AS first_day, max(last_ts) AS last_ts, sum(n)::BIGINT AS n
            FROM (SELECT l.* FROM r.lifetime l SEMI JOIN movers USING (uid) UNION ALL SELECT * FROM life_inc)
            GROUP BY ALL
            """,
        )
        do(self.con, "DELETE FROM r.lifetime WHERE uid IN (SELECT uid FROM movers)")
        do(self.con, "INSERT INTO r.lifetime SELECT * FROM life_new")
        for table in ("life_new", "movers", "life_inc"):
            do(self.con, f"DROP TABLE {table}")

    def _register_names(self, select: str) -> tuple[tuple[int, int, int, int], list[date]]:
        """``names.register_names`` on this rollup: the first of the two reads of new events."""
        return register_names(self.con, select)

    def _absorb_new_days(
        self,
        aggregate: str,
        bad: str,
        report: IngestReport,
        expected: tuple[int, int, int, int],
        in_days: str,
    ) -> None:
        """New events on days the rollup does not hold (``in_days``: those days): the aggregate goes
        straight into the rollup, in ``DAILY_ORDER``, without an
        intermediate copy; bad groups (on those days, or without a day) are counted and removed afterwards."""
        try:
            do(
                self.con,
                f"INSERT INTO r.daily SELECT day, uid, aid, eid, n, last_ts FROM ({aggregate}) ORDER BY {DAILY_ORDER}",
            )
        except duckdb.Error as exc:
            raise SourceError(f"reading the events failed: {str(exc).splitlines()[0]}") from None
        new = f"({in_days} OR day IS NULL)"
        check_totals(self.con, f"(SELECT * FROM r.daily WHERE {new})", expected)
        found = False
        for reason, n in do(self.con, f"SELECT {bad} AS bad, sum(n) FROM r.daily WHERE {new} GROUP BY bad"):
            report.rows += int(n)
            if reason is not None:
                report.bad[reason] = report.bad.get(reason, 0) + int(n)
                found = True
        if found:
            do(self.con, f"DELETE FROM r.daily WHERE {new} AND ({bad}) IS NOT NULL")

    def last_day(self) -> date | None:
        day: date | None = do(self.con, "SELECT max(day) FROM r.daily")[0][0]
        return day

    def close(self) -> None:
        self.con.close()


def _batches(files: list[FileInfo], limit: int) -> list[list[FileInfo]]:
    out: list[list[FileInfo]] = [[]]
    size = 0
    for info in files:
        if out[-1] and size + info.size > limit:
            out.append([])
            size = 0
        out[-1].append(info)
        size += info.size
    return out


def _lit(text: str) -> str:
    return text.replace("'", "''")
