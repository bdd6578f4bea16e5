"""Scoring: engagement metrics computed from raw product events (``source.kind = "events"``).

Events -> rollup (daily counts, incremental) -> per-profile metrics in DuckDB -> the same metric rows a
``files`` source yields, fed through the same validation and staging. Formulas: docs/SCORING.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import TracebackType

import pyarrow as pa

from accoil_sync.config.models import ProfileConfig, SourceConfig
from accoil_sync.errors import ConfigError, SourceError
from accoil_sync.scoring.accounts import load_account_details
from accoil_sync.scoring.db import do
from accoil_sync.scoring.explain import TABLES, Explanation, explain, explanation_tables
from accoil_sync.scoring.metrics import (
    compute_profile,
    lifetime_pairs,
    lifetime_table,
    recent_table,
    score_views,
)
from accoil_sync.scoring.rollup import IngestReport, Rollup
from accoil_sync.sources.base import RawChunk, RowError, with_position
from accoil_sync.sources.validate import canonical_columns
from accoil_sync.traits.names import ObjectKind

ROLLUP_FILE = Path("scoring") / "rollup.duckdb"


def rollup_path(state_dir: Path) -> Path:
    return state_dir / ROLLUP_FILE


def check_profiles(profiles: Sequence[ProfileConfig]) -> None:
    missing = [
        (
            f"profiles[{i}].scoring",
            f"profile {p.name!r} has no [profiles.scoring]; an events source needs one",
        )
        for i, p in enumerate(profiles)
        if p.scoring is None
    ]
    if missing:
        raise ConfigError(missing)


class Scorer:
    """One scoring pass: bring the rollup up to date, compute every profile as of a day, hand out rows."""

    def __init__(
        self,
        cfg: SourceConfig,
        profiles: Sequence[ProfileConfig],
        state_dir: Path,
        *,
        memory_limit: str = "512MB",
    ) -> None:
        check_profiles(profiles)
        self.cfg = cfg
        self.profiles = list(profiles)
        self.rollup = Rollup(rollup_path(state_dir), cfg, memory_limit)
        self.con = self.rollup.con
        self.report = IngestReport()
        self.as_of: date | None = None
        self.details = 0  # accounts with a name or domain from source.accounts
        self._explained = False

    def __enter__(self) -> Scorer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def run(self, as_of: date | None = None, now: datetime | None = None) -> Scorer:
        now = now or datetime.now(UTC)
        today = now.date()
        as_of = as_of or self.cfg.as_of or today
        if as_of > today:
            raise SourceError(f"--as-of {as_of} is in the future (today is {today} UTC)")
        lookback = max(p.window_days for p in self.profiles)
        self.report = self.rollup.ingest(lookback_days=lookback, now=now)
        if self.rollup.empty():
            # An empty read must never look like "every user left": stop before anything is planned.
            raise SourceError(
                "the events source holds no usable event"
                + (
                    f" ({', '.join(f'{r} x{n}' for r, n in self.report.bad.items())})"
                    if self.report.bad
                    else ""
                )
                + "; nothing was scored"
            )
        end_of_day = datetime.combine(as_of + timedelta(days=1), time(), UTC) - timedelta(seconds=1)
        computed_at = min(now, end_of_day).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.details = load_account_details(self.con, self.cfg)
        lifetime_pairs(self.con, self.profiles, lifetime_table(self.con, as_of))
        recent_table(self.con, as_of, max(p.window_days for p in self.profiles))
        for i, profile in enumerate(self.profiles):
            compute_profile(self.con, profile, as_of, computed_at, index=i)
        score_views(self.con, len(self.profiles))
        self.as_of = as_of
        self._explained = False
        return self

    def table(self, kind: ObjectKind) -> str:
        return "score_users" if kind is ObjectKind.USER else "score_accounts"

    def columns(self, kind: ObjectKind) -> tuple[str, ...]:
        """The metric columns a files source reads, in its order."""
        return canonical_columns(kind)

    def chunks(self, kind: ObjectKind, *, explain: bool = False) -> Iterator[RawChunk]:
        """The computed metric rows, as a files source would yield them (positions name the profile).

        ``explain``: each row also carries its explanation (JSON text) in ``_explain``, which the stage
        keeps beside the metrics and the card stores, so the card's details page never runs the scorer."""
        if kind is ObjectKind.USER and self.report.bad:
            column = self.cfg.event_columns
            where = {"missing user id": column.user_id, "missing event name": column.event}
            yield RawChunk(
                pa.table({}),
                [
                    RowError(
                        kind,
                        "source.events",
                        None,
                        where.get(reason, column.timestamp),
                        f"{n} event row(s) skipped: {reason}",
                    )
                    for reason, n in sorted(self.report.bad.items())
                ],
            )
        label = f"events:{kind.value}s"
        cols = ", ".join(f"s.{c}" for c in self.columns(kind))
        sql = f"SELECT {cols} FROM {self.table(kind)} s"
        if explain:
            if not self._explained:
                assert self.as_of is not None, "run() first"
                self._store_rows()
                explanation_tables(self.con, self.profiles, self.as_of)
                self._explained = True
            table, key = TABLES[kind]
            sql = (
                f"SELECT {cols}, e.doc AS _explain, e.fp AS _explain_fp FROM {self.table(kind)} s "
                f"LEFT JOIN {table} e ON e.key = s.{key} AND e.score_name = s.score_name"
            )
        reader = self.con.sql(sql).to_arrow_reader(self.cfg.chunk_size)
        start = 1
        for batch in reader:
            rows = pa.array(range(start, start + batch.num_rows), pa.int64())
            start += batch.num_rows
            yield RawChunk(with_position(pa.Table.from_batches([batch]), label, rows))

    def _store_rows(self) -> None:
        """Compute the score views into tables once: the explanations read them per profile and kind, and
        computing them inside those statements took more than DuckDB's 512 MB at 100M events."""
        for kind in ObjectKind:
            view = self.table(kind)
            do(self.con, f"CREATE OR REPLACE TEMP TABLE {view}_rows AS SELECT * FROM {view}")
            do(self.con, f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {view}_rows")

    def write(self, directory: Path, fmt: str = "parquet") -> list[Path]:
        """The computed metric rows as ``users.<fmt>`` and ``accounts.<fmt>``: files a ``kind = "files"``
        source reads back unchanged (CSV: segments ``;``-separated, times ISO 8601 UTC)."""
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for kind in ObjectKind:
            cols = list(self.columns(kind))
            if fmt == "csv":
                cols = [
                    "array_to_string(segments, ';') AS segments"
                    if c == "segments"
                    else "strftime(last_active, '%Y-%m-%dT%H:%M:%SZ') AS last_active"
                    if c == "last_active"
                    else c
                    for c in cols
                ]
            path = directory / f"{kind.value}s.{fmt}"
            options = "FORMAT csv, HEADER true" if fmt == "csv" else "FORMAT parquet"
            order = self.columns(kind)[0]
            do(
                self.con,
                f"COPY (SELECT {', '.join(cols)} FROM {self.table(kind)} ORDER BY {order}, score_name) "
                f"TO '{str(path).replace(chr(39), chr(39) * 2)}' ({options})",
            )
            written.append(path)
        return written

    def explain(self, key: str) -> list[Explanation]:
        assert self.as_of is not None, "run() first"
        return explain(self.con, self.profiles, self.as_of, key)

    def close(self) -> None:
        self.rollup.close()


__all__ = ["Explanation", "IngestReport", "Scorer", "check_profiles", "rollup_path"]
