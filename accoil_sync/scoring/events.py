"""Where raw events come from: file globs, a DuckDB query, a SQLAlchemy URL, or a Segment/RudderStack preset.

Every reader ends as SQL over one DuckDB connection that yields the canonical event columns
``user_id, account_id, event, ts, email, loaded`` (``loaded`` is the incremental watermark: the warehouse
load time when mapped, else the event time). Nothing is materialised in Python except SQLAlchemy chunks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from accoil_sync.config.models import SourceConfig
from accoil_sync.errors import SourceError
from accoil_sync.sources.files import expand, file_format
from accoil_sync.sources.sql import _plain

CANONICAL = ("user_id", "account_id", "event", "ts", "email", "loaded")

# Segment and RudderStack load track calls into <schema>.tracks (user_id, event, timestamp, uuid_ts: the
# load time) and group calls into <schema>.groups (user_id, group_id, timestamp). A user's account is the
# group of their latest group call; uuid_ts is the watermark, so events loaded late are still picked up.
_PRESET_SQL = """
SELECT t.user_id, g.group_id AS account_id, t.event, t.timestamp AS ts, t.uuid_ts AS loaded
FROM {schema}tracks t
LEFT JOIN (
  SELECT user_id, group_id FROM (
    SELECT user_id, group_id, row_number() OVER (PARTITION BY user_id ORDER BY timestamp DESC) AS rn
    FROM {schema}groups) latest
  WHERE rn = 1
) g ON g.user_id = t.user_id
"""  # portable SQL (no QUALIFY, no quoted identifiers): it also runs on Postgres, Redshift, Snowflake, BigQuery


def preset_sql(cfg: SourceConfig) -> str:
    schema = f"{cfg.warehouse_schema}." if cfg.warehouse_schema else ""
    return _PRESET_SQL.format(schema=schema)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ts(expr: str, type_name: str) -> str:
    """A timestamp column of any source type: TIMESTAMP(TZ), DATE, epoch seconds/milliseconds, ISO text."""
    t = type_name.upper()
    if t.startswith("TIMESTAMP") or t == "DATE":
        return f"CAST({expr} AS TIMESTAMPTZ)"
    if any(
        t.startswith(n) for n in ("BIGINT", "INTEGER", "DOUBLE", "DECIMAL", "HUGEINT", "UBIGINT", "FLOAT")
    ):
        return f"(CASE WHEN {expr} < 1e11 THEN to_timestamp({expr}) ELSE to_timestamp({expr} / 1000.0) END)"
    text = f"NULLIF(trim(CAST({expr} AS VARCHAR)), '')"
    return (
        f"(CASE WHEN regexp_full_match({text}, '\\d{{9,10}}') THEN to_timestamp(CAST({text} AS BIGINT)) "
        f"WHEN regexp_full_match({text}, '\\d{{12,13}}') THEN to_timestamp(CAST({text} AS BIGINT) / 1000.0) "
        f"ELSE TRY_CAST({text} AS TIMESTAMPTZ) END)"
    )


def canonical_select(con: duckdb.DuckDBPyConnection, relation_sql: str, cfg: SourceConfig, label: str) -> str:
    """SQL renaming and typing the mapped columns of ``relation_sql``; a missing required column is an
    error naming it, an optional one is NULL."""
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM ({relation_sql}) LIMIT 0").fetchall()
    except duckdb.Error as exc:
        raise SourceError(f"{label}: cannot read the events: {exc}") from None
    types = {row[0]: str(row[1]) for row in described}
    lower = {name.lower(): name for name in types}
    cols = cfg.event_columns
    if cfg.preset is not None:  # the preset query already speaks canonical names
        mapping: dict[str, str | None] = {
            "user_id": "user_id",
            "account_id": "account_id",
            "event": "event",
            "ts": "ts",
            "email": None,
            "loaded": "loaded",
        }
    else:
        mapping = {
            "user_id": cols.user_id,
            "account_id": cols.account_id,
            "event": cols.event,
            "ts": cols.timestamp,
            "email": cols.email,
            "loaded": cols.loaded_at,
        }
    out = []
    # A column the configuration names must exist: an email mapped to a column the events lack would leave
    # every HubSpot contact unmatched without a word, run after run. Only an account id left at its
    # default may be absent (events without one count for the user only).
    named = {"user_id", "event", "ts"}
    if cfg.preset is None:
        named |= {"email"} if cols.email else set()
        named |= {"loaded"} if cols.loaded_at else set()
        named |= {"account_id"} if "account_id" in cols.model_fields_set else set()
    for canon, source in mapping.items():
        found = lower.get(source.lower()) if source else None
        if found is None:
            if canon in named:
                field = {"ts": "timestamp", "loaded": "loaded_at"}.get(canon, canon)
                raise SourceError(
                    f"{label}: no column {source!r} for the event {field} (columns: {list(types)[:12]}); "
                    f'map it with [source.event_columns] {field} = "..."'
                )
            if canon == "loaded":
                out.append("ts AS loaded")
                continue
            out.append(f"NULL::VARCHAR AS {canon}")
            continue
        expr = _q(found)
        if canon in ("ts", "loaded"):
            out.append(f"{_ts(expr, types[found])} AS {canon}")
        else:
            out.append(f"NULLIF(trim(CAST({expr} AS VARCHAR)), '') AS {canon}")
    # ``loaded`` may refer to ts, so type the columns first and derive in an outer select.
    inner = ", ".join(o for o in out if not o.startswith("ts AS loaded"))
    loaded = "ts AS loaded" if "ts AS loaded" in out else "loaded"
    cols_sql = "user_id, account_id, event, ts, email, " + loaded
    return f"SELECT {cols_sql} FROM (SELECT {inner} FROM ({relation_sql}))"


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    mtime_ns: int


def list_files(cfg: SourceConfig) -> list[FileInfo]:
    assert cfg.events is not None
    out = []
    for path in expand(cfg.events):
        stat = path.stat()
        out.append(FileInfo(str(path), stat.st_size, stat.st_mtime_ns))
    return out


def files_sql(files: list[FileInfo], cfg: SourceConfig) -> str:
    """One relation over ``files``, per format (CSV, JSON Lines, Parquet), unioned by column name."""
    by_format: dict[str, list[str]] = {}
    for info in files:
        by_format.setdefault(file_format(Path(info.path), cfg.format), []).append(info.path)
    parts = []
    for fmt, paths in sorted(by_format.items()):
        listed = "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"
        if fmt == "parquet":
            parts.append(f"SELECT * FROM read_parquet({listed}, union_by_name = true)")
        elif fmt == "jsonl":
            parts.append(
                f"SELECT * FROM read_json({listed}, format = 'newline_delimited', union_by_name = true)"
            )
        else:
            delim = cfg.csv_delimiter.replace("'", "''")
            parts.append(
                f"SELECT * FROM read_csv({listed}, delim = '{delim}', header = true, union_by_name = true, "
                "all_varchar = true)"
            )
    return " UNION ALL BY NAME ".join(parts)


def source_fingerprint(cfg: SourceConfig) -> str:
    """What the rollup was built from: a different source or mapping means rebuilding it."""
    data = {
        "events": cfg.events,
        "from": cfg.events_from,
        "preset": cfg.preset,
        "schema": cfg.warehouse_schema,
        "database": cfg.database,
        "columns": cfg.event_columns.model_dump(),
        "format": cfg.format,
        "delimiter": cfg.csv_delimiter,
        "url": hashlib.sha256(cfg.url.get_secret_value().encode()).hexdigest() if cfg.url else None,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def query_sql(cfg: SourceConfig) -> str:
    return preset_sql(cfg) if cfg.preset is not None else str(cfg.events)


def remote_filter(
    cfg: SourceConfig, since: datetime | None, tail: datetime | None
) -> tuple[str, dict[str, object]]:
    """The watermark as a WHERE on the remote query, so a warehouse sends only the new rows."""
    if since is not None:
        column = "loaded" if cfg.preset is not None else cfg.event_columns.loaded_at
        return f"WHERE q.{column} > :since", {"since": since}
    if tail is not None:
        column = "ts" if cfg.preset is not None else cfg.event_columns.timestamp
        return f"WHERE q.{column} >= :tail", {"tail": tail}
    return "", {}


def sqlalchemy_chunks(
    cfg: SourceConfig, query: str, chunk_size: int, where: str = "", params: dict[str, object] | None = None
) -> Iterator[pa.Table]:
    """Stream a remote query in Arrow chunks; the caller aggregates each into the rollup."""
    import sqlalchemy as sa

    assert cfg.url is not None
    try:
        engine = sa.create_engine(cfg.url.get_secret_value())
    except (sa.exc.ArgumentError, ImportError) as exc:
        # The message of a URL parse error can quote the URL (and its password): name the type only.
        raise SourceError(f"source.url is not usable: {type(exc).__name__}") from None
    try:
        with engine.connect() as conn:
            sql = f"SELECT * FROM ({query}) q {where}" if where else query
            result = conn.execution_options(stream_results=True, yield_per=chunk_size).execute(
                sa.text(sql), params or {}
            )
            names = list(result.keys())
            for part in result.partitions(chunk_size):
                yield pa.table({n: [_plain(row[i]) for row in part] for i, n in enumerate(names)})
    except sa.exc.SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise SourceError(f"the events query failed: {type(exc).__name__}: {detail}") from None
    finally:
        engine.dispose()
