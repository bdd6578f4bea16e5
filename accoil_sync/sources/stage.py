"""The validated, de-duplicated view of one run's source: a DuckDB staging database beside the state.

Raw chunks go in one at a time (so memory is bounded by the chunk size and DuckDB's own limit, not by the
row count); what comes out is, per object kind, one fingerprint per object and -- for the objects the
planner decides to send -- full ``ObjectRecord``s.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from accoil_sync.config.models import ProfileConfig, SourceConfig
from accoil_sync.sources.base import (
    EXPLAIN_FP_COLUMN,
    FILE_COLUMN,
    INTERNAL_COLUMNS,
    RawChunk,
    RowError,
)
from accoil_sync.sources.records import RecordDecoder, document_sql
from accoil_sync.sources.validate import canonical_columns, validation_sql
from accoil_sync.traits.model import ObjectRecord
from accoil_sync.traits.names import ObjectKind

# Bump when the fingerprint's input changes: every object is then compared field by field once.
FINGERPRINT_VERSION = "2"
_NULL = "\u2205"


@dataclass(slots=True)
class KindStats:
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    objects: int = 0
    file_errors: int = 0  # problems with a whole file or its rest: the source was not read completely
    skipped: int = 0  # rows read from a file that was then rejected whole (a required column missing)
    unkeyed: int = 0  # invalid rows without a usable key: any object could be the one they describe
    held: int = 0  # objects with an invalid row: they keep their last acknowledged values
    columns: frozenset[str] = frozenset()  # canonical columns every used file of this kind had

    # A file-level error (a file skipped whole, or cut short) is counted as one invalid row above; these
    # count rows of data, for people.
    @property
    def rows_read(self) -> int:
        return self.rows - self.file_errors

    @property
    def invalid_rows(self) -> int:
        return self.invalid - self.file_errors


@dataclass(slots=True)
class SourceStats:
    by_kind: dict[ObjectKind, KindStats] = field(default_factory=lambda: {k: KindStats() for k in ObjectKind})

    @property
    def invalid(self) -> int:
        return sum(s.invalid for s in self.by_kind.values())


def _fingerprint_sql(kind: ObjectKind, columns: frozenset[str]) -> str:
    """One 128-bit fingerprint per object: the XOR of each profile row's md5.

    XOR is order-independent, so no sorted string aggregation is needed (3x cheaper at 1M rows); each row's
    text includes its profile name, so two profiles never cancel out.

    ``fx``: the same over an events source's explanations (0 without them). Only a destination that
    stores them (the card) adds it to its fingerprint, so a changed explanation is a change for the card
    alone, and staging explanations or not never re-plans the other destinations.
    """
    metrics = [
        "score",
        "array_to_string(segments, chr(29))",
        "activation",
        "adoption_recent",
        "adoption_ever",
        "last_active",
        "frequency",
    ]
    metrics += ["email", "account_id"] if kind is ObjectKind.USER else ["domain", "name"]
    if kind is ObjectKind.ACCOUNT:
        metrics += ["active_users", "total_users"]
    explained = (
        f"bit_xor(md5_number(profile || chr(31) || {EXPLAIN_FP_COLUMN})) "
        f"FILTER (WHERE {EXPLAIN_FP_COLUMN} IS NOT NULL)"
        if EXPLAIN_FP_COLUMN in columns
        else "NULL"
    )
    canon = " || chr(31) || ".join(
        f"coalesce(CAST({m} AS VARCHAR), '{_NULL}')" for m in ["profile", *metrics]
    )
    return (
        f"SELECT key, bit_xor(md5_number('{FINGERPRINT_VERSION}' || chr(30) || {canon})) AS fp, "
        f"coalesce({explained}, 0::UHUGEINT) AS fx "
        f"FROM final_{kind.value} GROUP BY key"
    )


class Stage:
    """Owns a DuckDB database for one run; close() removes it."""

    def __init__(self, directory: Path, profiles: Sequence[ProfileConfig], run_id: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"stage-{run_id}.duckdb"
        self._remove_files()
        self.con = duckdb.connect(":memory:")
        self._do("SET TimeZone = 'UTC'")
        # Bounded memory: DuckDB spills sorts and joins to disk past this.
        self._do("SET memory_limit = '256MB'")
        self._do(f"SET temp_directory = '{directory / 'duckdb-tmp'}'")
        self._do("SET preserve_insertion_order = false")
        self._do("SET enable_progress_bar = false")  # DuckDB would draw on the user's terminal
        self.profiles = list(profiles)
        self.stats = SourceStats()
        self._seq = 0
        self._created: set[ObjectKind] = set()
        self._do(
            "CREATE TABLE invalid (kind VARCHAR, file VARCHAR, row BIGINT, col VARCHAR, "
            "reason VARCHAR, key VARCHAR, scope VARCHAR)"
        )
        profile_table = pa.table(
            {
                "source_name": [p.name for p in self.profiles],
                "score_name": [p.score_name for p in self.profiles],
                "window_days": pa.array([p.window_days for p in self.profiles], pa.int64()),
            }
        )
        self.con.register("profile_table", profile_table)
        self._do("CREATE TABLE profiles AS SELECT * FROM profile_table")
        self.con.unregister("profile_table")
        self.now_iso = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S+00")

    def _do(self, sql: str, params: Sequence[object] | None = None) -> list[tuple[Any, ...]]:
        # DuckDB 2 wants every result consumed before the connection runs the next statement.
        return (
            list(self.con.execute(sql, params).fetchall())
            if params
            else list(self.con.execute(sql).fetchall())
        )

    # ---------------------------------------------------------------------------------------------- load

    def load(self, kind: ObjectKind, chunks: Iterable[RawChunk], cfg: SourceConfig) -> None:
        source_names = _source_names(cfg)
        stats = self.stats.by_kind[kind]
        rejected: set[str] = set()
        file_columns: dict[str, set[str]] = {}
        for raw in chunks:
            self._record_errors(raw.errors)
            stats.invalid += len(raw.errors)
            stats.rows += len(raw.errors)
            for error in raw.errors:
                if error.file_level:
                    stats.file_errors += 1
                if error.scope == "file":
                    rejected.add(error.file)
            if raw.table.num_rows == 0:
                continue
            file_columns.setdefault(raw.table.column(FILE_COLUMN)[0].as_py(), set()).update(
                c for c in raw.table.column_names if c not in INTERNAL_COLUMNS
            )
            chunk = raw.table.append_column(
                "_seq", pa.array(range(self._seq, self._seq + raw.table.num_rows), pa.int64())
            )
            self._seq += raw.table.num_rows
            sql = validation_sql(
                chunk.schema,
                kind,
                source_names,
                self.profiles[0].name,
                self.now_iso,
                cfg.max_future_skew_hours,
            )
            self.con.register("chunk", chunk)
            try:
                if kind not in self._created:
                    self._do(f"CREATE TABLE stage_{kind.value} AS {sql} LIMIT 0")
                    self._created.add(kind)
                # Valid and invalid rows land in one table (one pass per chunk); _finish splits them.
                self._do(f"INSERT INTO stage_{kind.value} {sql}")
            finally:
                self.con.unregister("chunk")
            stats.rows += chunk.num_rows
        if rejected and kind in self._created:
            # A file rejected whole after some of its rows were passed on (JSON Lines learns its columns
            # only at the end): nothing of it may be planned.
            files = pa.table({"file": pa.array(sorted(rejected), pa.string())})
            self.con.register("rejected_files", files)
            try:
                dropped = self._do(
                    f"DELETE FROM stage_{kind.value} WHERE _file IN (SELECT file FROM rejected_files) "
                    "RETURNING 1"
                )
            finally:
                self.con.unregister("rejected_files")
            stats.rows -= len(dropped)
            stats.skipped += len(dropped)
        used = [cols for file, cols in file_columns.items() if file not in rejected]
        stats.columns = frozenset(set.intersection(*used)) if used else frozenset()
        self._finish(kind)

    def _record_errors(self, errors: Iterable[RowError]) -> None:
        rows = [(e.kind.value, e.file, e.row, e.column, e.reason, e.key, e.scope) for e in errors]
        if rows:
            self.con.executemany("INSERT INTO invalid VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def _finish(self, kind: ObjectKind) -> None:
        k = kind.value
        if kind not in self._created:
            cols = ", ".join(f"NULL::VARCHAR AS {c}" for c in ("key", "profile"))
            self._do(f"CREATE TABLE final_{k} AS SELECT {cols}, NULL::BIGINT AS _seq LIMIT 0")
            self._do(f"CREATE TABLE desired_{k} (key VARCHAR, fp UHUGEINT, fx UHUGEINT)")
            self._held(kind)
            return
        stats = self.stats.by_kind[kind]
        bad = self._do(f"SELECT _file, _row, key, _errors FROM stage_{k} WHERE len(_errors) > 0")
        stats.invalid += len(bad)
        stats.valid = stats.rows - stats.invalid
        self._record_errors(
            RowError(kind, file, row, *(_split_reason(reason)), key=key)
            for file, row, key, reasons in bad
            for reason in reasons
        )
        if bad:
            self._do(f"DELETE FROM stage_{k} WHERE len(_errors) > 0")
        self._do(f"ALTER TABLE stage_{k} DROP COLUMN _errors")
        # Counting distinct keys is cheap; the list of duplicate rows is only built when there are some.
        repeated = self._do(f"SELECT count(*) - count(DISTINCT (key, profile)) FROM stage_{k}")[0][0]
        where = "" if repeated else "WHERE false "
        self._do(
            f"CREATE TABLE dups_{k} AS SELECT key, profile, count(*) AS n, "
            f"list(_file || ':' || _row ORDER BY _seq) AS rows FROM stage_{k} {where}GROUP BY key, profile "
            "HAVING count(*) > 1"
        )
        if repeated:
            self._do(
                f"CREATE TABLE final_{k} AS SELECT * FROM stage_{k} "
                "QUALIFY row_number() OVER (PARTITION BY key, profile ORDER BY _seq DESC) = 1"
            )
            self._do(f"DROP TABLE stage_{k}")
        else:
            self._do(f"ALTER TABLE stage_{k} RENAME TO final_{k}")
        self._do(f"CREATE TABLE desired_{k} AS {_fingerprint_sql(kind, self.columns(kind))}")
        stats.duplicates = int(self._do(f"SELECT coalesce(sum(n - 1), 0) FROM dups_{k}")[0][0])
        stats.objects = int(self._do(f"SELECT count(*) FROM desired_{k}")[0][0])
        self._held(kind)

    def _held(self, kind: ObjectKind) -> None:
        """``held_<kind>``: keys with an invalid row. The planner neither clears nor removes anything of
        theirs: a bad value is not evidence that the old one is gone."""
        k = kind.value
        self._do(
            f"CREATE TABLE held_{k} AS SELECT DISTINCT key FROM invalid "
            "WHERE kind = ? AND scope = 'row' AND key IS NOT NULL",
            [k],
        )
        stats = self.stats.by_kind[kind]
        stats.held = int(self._do(f"SELECT count(*) FROM held_{k}")[0][0])
        stats.unkeyed = int(
            self._do("SELECT count(*) FROM invalid WHERE kind = ? AND scope = 'row' AND key IS NULL", [k])[0][
                0
            ]
        )

    # -------------------------------------------------------------------------------------------- read

    def duplicates(self, kind: ObjectKind, limit: int = 20) -> list[tuple[str, str, int, list[str]]]:
        if kind not in self._created:
            return []
        rows = self.con.execute(
            f"SELECT key, profile, n, rows FROM dups_{kind.value} ORDER BY key, profile LIMIT {int(limit)}"
        ).fetchall()
        return [(r[0], r[1], int(r[2]), list(r[3])) for r in rows]

    def errors(self, limit: int | None = None) -> list[RowError]:
        # File-level problems first: they say why a whole file's objects are missing from the plan.
        sql = (
            "SELECT kind, file, row, col, reason, key, scope FROM invalid "
            "ORDER BY scope = 'row', kind, file, row"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [
            RowError(ObjectKind(r[0]), r[1], r[2], r[3], r[4], r[5], r[6])
            for r in self.con.execute(sql).fetchall()
        ]

    def error_summary(self, limit: int = 10) -> list[tuple[str, int]]:
        rows = self.con.execute(
            "SELECT coalesce(col, '(row)') || ': ' || regexp_replace(regexp_replace(reason, ': .*$', ''), "
            "'-?[0-9]+([.][0-9]+)?', 'N', 'g') AS r, "
            f"count(*) FROM invalid GROUP BY r ORDER BY count(*) DESC, r LIMIT {int(limit)}"
        ).fetchall()
        return [(r[0], int(r[1])) for r in rows]

    def columns(self, kind: ObjectKind) -> frozenset[str]:
        """The staged table's columns: what ``document_sql`` may read for this kind."""
        rows = self._do(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [f"final_{kind.value}"]
        )
        return frozenset(r[0] for r in rows)

    def records(self, kind: ObjectKind, keys: Sequence[str]) -> dict[str, ObjectRecord]:
        """Full records for ``keys`` (profiles merged), in one query."""
        if not keys:
            return {}
        key_table = pa.table({"key": pa.array(list(keys), pa.string())})
        doc = document_sql(kind, "f", self.columns(kind))
        self.con.register("wanted", key_table)
        try:
            rows = self._do(
                f"SELECT f.key, {doc} FROM final_{kind.value} f JOIN wanted USING (key) ORDER BY f.key, f._seq"
            )
        finally:
            self.con.unregister("wanted")
        decoder = RecordDecoder(kind)
        return {
            key: decoder.record(key, [r[1] for r in group])
            for key, group in itertools.groupby(rows, lambda r: r[0])
        }

    def close(self) -> None:
        self.con.close()
        self._remove_files()

    def _remove_files(self) -> None:
        for path in (self.path, self.path.with_name(self.path.name + ".wal")):
            path.unlink(missing_ok=True)


def _split_reason(text: str) -> tuple[str | None, str]:
    column, sep, reason = text.partition(": ")
    return (column, reason) if sep else (None, text)


def _source_names(cfg: SourceConfig) -> dict[str, str]:
    return dict(cfg.columns.model_dump())


def column_map(kind: ObjectKind, cfg: SourceConfig) -> dict[str, str]:
    """Source column -> canonical name, for the columns this kind uses."""
    mapping = cfg.columns.model_dump()
    return {mapping[c]: c for c in canonical_columns(kind)}
