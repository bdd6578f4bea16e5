"""SQL readers: a DuckDB query (embedded) or any SQLAlchemy URL, streamed in chunks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

from accoil_sync.config.models import SourceConfig
from accoil_sync.errors import SourceError
from accoil_sync.sources.base import RawChunk, RowError, Scope, with_position
from accoil_sync.sources.columns import missing_column_error
from accoil_sync.traits.names import ObjectKind


def _select(table: pa.Table, columns: Mapping[str, str]) -> pa.Table:
    present = [c for c in table.column_names if c in columns]
    return table.select(present).rename_columns([columns[c] for c in present])


def _problem(kind: ObjectKind, label: str, row: int | None, reason: str, scope: Scope) -> RawChunk:
    return RawChunk(pa.table({}), [RowError(kind, label, row, None, reason, scope=scope)])


def read_duckdb(
    query: str,
    kind: ObjectKind,
    cfg: SourceConfig,
    columns: Mapping[str, str],
    required: Mapping[str, str],
) -> Iterator[RawChunk]:
    label = f"duckdb:{kind.value}s"
    try:
        con = duckdb.connect(cfg.database or ":memory:", read_only=cfg.database is not None)
        reader = con.sql(query).to_arrow_reader(cfg.chunk_size)
    except duckdb.Error as exc:
        raise SourceError(f"the {kind.value}s query failed in DuckDB: {exc}") from None
    if reader is None:
        raise SourceError(f"the {kind.value}s query returned no result set")
    start = 1
    try:
        missing = missing_column_error(kind, label, list(reader.schema.names), required)
        if missing is not None:
            yield RawChunk(pa.table({}), [missing])
            return
        for batch in reader:
            table = _select(pa.Table.from_batches([batch]), columns)
            rows = pa.array(range(start, start + batch.num_rows), pa.int64())
            start += batch.num_rows
            yield RawChunk(with_position(table, label, rows))
    except (duckdb.Error, pa.ArrowException, OSError) as exc:  # the Arrow stream raises OSError
        # A query that fails midway: the rows already read stay, the rest is one file-level error.
        yield _problem(
            kind, label, start, f"the query failed after {start - 1} rows: {exc}"[:500], scope="rest"
        )
    finally:
        con.close()


def _plain(value: Any) -> Any:
    # Arrow cannot mix Decimal and float in one column; engines hand back Decimal for NUMERIC.
    return float(value) if isinstance(value, Decimal) else value


def _column(values: list[Any]) -> pa.Array:
    """One column of a result chunk. A column whose values Arrow cannot put in one type (a text value among
    numbers, an int beyond 64 bits) goes in as text: the validator then judges each value on its own row."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def read_sqlalchemy(
    query: str,
    kind: ObjectKind,
    cfg: SourceConfig,
    columns: Mapping[str, str],
    required: Mapping[str, str],
) -> Iterator[RawChunk]:
    import sqlalchemy as sa

    assert cfg.url is not None
    label = f"sql:{kind.value}s"
    try:
        engine = sa.create_engine(cfg.url.get_secret_value())
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise SourceError(f"source.url is not usable: {type(exc).__name__}: {exc}".split("://")[0]) from None
    start = 1
    checked = False
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=cfg.chunk_size).execute(
                sa.text(query)
            )
            names = list(result.keys())
            missing = missing_column_error(kind, label, names, required)
            if missing is not None:
                yield RawChunk(pa.table({}), [missing])
                return
            checked = True
            for part in result.partitions(cfg.chunk_size):
                table = pa.table({n: _column([_plain(row[i]) for row in part]) for i, n in enumerate(names)})
                table = _select(table, columns)
                rows = pa.array(range(start, start + len(part)), pa.int64())
                start += len(part)
                yield RawChunk(with_position(table, label, rows))
    except sa.exc.SQLAlchemyError as exc:
        # str(exc) of a connection error can quote the URL; keep only the driver's first line.
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        message = f"the {kind.value}s query failed: {type(exc).__name__}: {detail}"
        if not checked:
            raise SourceError(message) from None
        yield _problem(kind, label, start, f"{message} (after {start - 1} rows)", scope="rest")
    finally:
        engine.dispose()
