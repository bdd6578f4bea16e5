"""SQL readers: a DuckDB query (embedded) or any SQLAlchemy URL, streamed in chunks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

from accoil_sync.config.models import SourceConfig
from accoil_sync.errors import SourceError
from accoil_sync.sources.base import RawChunk, RowError, with_position
from accoil_sync.traits.names import ObjectKind


def _select(table: pa.Table, columns: Mapping[str, str], kind: ObjectKind, label: str) -> pa.Table:
    present = [c for c in table.column_names if c in columns]
    key = "user_id" if kind is ObjectKind.USER else "account_id"
    if not any(columns[c] == key for c in present):
        key_source = next(src for src, canon in columns.items() if canon == key)
        raise SourceError(
            f"{label} returns no column {key_source!r} for the {kind.value} key "
            f"(columns: {table.column_names[:12]}); alias it in the query or map it with [source.columns]"
        )
    return table.select(present).rename_columns([columns[c] for c in present])


def read_duckdb(
    query: str, kind: ObjectKind, cfg: SourceConfig, columns: Mapping[str, str]
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
        for batch in reader:
            table = _select(pa.Table.from_batches([batch]), columns, kind, label)
            rows = pa.array(range(start, start + batch.num_rows), pa.int64())
            start += batch.num_rows
            yield RawChunk(with_position(table, label, rows))
    except duckdb.Error as exc:
        raise SourceError(f"the {kind.value}s query failed in DuckDB: {exc}") from None
    finally:
        con.close()


def _plain(value: Any) -> Any:
    # Arrow cannot mix Decimal and float in one column; engines hand back Decimal for NUMERIC.
    return float(value) if isinstance(value, Decimal) else value


def read_sqlalchemy(
    query: str, kind: ObjectKind, cfg: SourceConfig, columns: Mapping[str, str]
) -> Iterator[RawChunk]:
    import sqlalchemy as sa

    assert cfg.url is not None
    label = f"sql:{kind.value}s"
    try:
        engine = sa.create_engine(cfg.url.get_secret_value())
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise SourceError(f"source.url is not usable: {type(exc).__name__}: {exc}".split("://")[0]) from None
    start = 1
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=cfg.chunk_size).execute(
                sa.text(query)
            )
            names = list(result.keys())
            for part in result.partitions(cfg.chunk_size):
                data = {n: [_plain(row[i]) for row in part] for i, n in enumerate(names)}
                try:
                    table = pa.table(data)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    yield RawChunk(
                        pa.table({}), [RowError(kind, label, start, None, f"mixed column types: {exc}")]
                    )
                    start += len(part)
                    continue
                table = _select(table, columns, kind, label)
                rows = pa.array(range(start, start + len(part)), pa.int64())
                start += len(part)
                yield RawChunk(with_position(table, label, rows))
    except sa.exc.SQLAlchemyError as exc:
        # str(exc) of a connection error can quote the URL; keep only the driver's first line.
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise SourceError(f"the {kind.value}s query failed: {type(exc).__name__}: {detail}") from None
    finally:
        engine.dispose()
