"""Metric sources: files (CSV, JSON Lines, Parquet), SQL (DuckDB, SQLAlchemy) and events (computed by
``accoil_sync.scoring``), validated into a stage."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping

from accoil_sync.config.models import SourceConfig
from accoil_sync.sources.base import RawChunk, RowError
from accoil_sync.sources.columns import required_columns
from accoil_sync.sources.files import read_files
from accoil_sync.sources.sql import read_duckdb, read_sqlalchemy
from accoil_sync.sources.stage import KindStats, SourceStats, Stage, column_map
from accoil_sync.traits.names import ObjectKind


def raw_chunks(kind: ObjectKind, cfg: SourceConfig, expected: Collection[str] = ()) -> Iterator[RawChunk]:
    """``expected``: canonical columns the source had at the last accepted run (required again)."""
    spec = cfg.users if kind is ObjectKind.USER else cfg.accounts
    if not spec:
        return iter(())
    columns = column_map(kind, cfg)
    required = required_columns(kind, cfg, columns, expected)
    if cfg.kind == "files":
        return read_files(spec, kind, cfg, columns, required)
    if cfg.kind == "duckdb":
        return read_duckdb(spec, kind, cfg, columns, required)
    return read_sqlalchemy(spec, kind, cfg, columns, required)


def load_stage(
    stage: Stage,
    cfg: SourceConfig,
    expected: Mapping[ObjectKind, Collection[str]] | None = None,
    *,
    explain: bool = True,
) -> Stage:
    """``explain``: an events source stages each row's explanation too (for the card and ``plan``)."""
    if cfg.kind == "events":
        from accoil_sync.scoring import Scorer

        # The stage lives in <state dir>/tmp; the rollup is kept beside it in <state dir>/scoring.
        with Scorer(cfg, stage.profiles, stage.path.parent.parent) as scorer:
            scorer.run()
            for kind in ObjectKind:
                stage.load(kind, scorer.chunks(kind, explain=explain), cfg)
        return stage
    for kind in ObjectKind:
        stage.load(kind, raw_chunks(kind, cfg, (expected or {}).get(kind, ())), cfg)
    return stage


__all__ = ["KindStats", "RawChunk", "RowError", "SourceStats", "Stage", "load_stage", "raw_chunks"]
