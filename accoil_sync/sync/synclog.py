"""The per-record sync log: one Parquet file per run under ``<state dir>/synclog/``, queryable with DuckDB.

duckdb -c "SELECT outcome, count(*) FROM '.accoil-sync/synclog/*.parquet' GROUP BY ALL"

While a run works, each committed batch's lines are appended to an Arrow IPC stream
(``run-<id>.arrows``) and flushed with the batch's state commit, so a run killed at any moment keeps the
audit rows of everything it delivered (a Parquet file is unreadable until its footer is written). At the
end of the run the stream becomes the Parquet file; the stream of a killed run becomes one at the start of
the next run (``recover``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("at", pa.string()),
        ("destination", pa.string()),
        ("kind", pa.string()),
        ("key", pa.string()),
        ("operation", pa.string()),
        ("changed_fields", pa.list_(pa.string())),
        ("outcome", pa.string()),
        ("reason", pa.string()),
    ]
)
FIELDS = SCHEMA.get_field_index("changed_fields")
ROW_GROUP = 100_000  # rows per Parquet row group when a stream is converted

log = logging.getLogger("accoil_sync.synclog")


class SyncLog:
    def __init__(self, directory: Path, run_id: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        recover(directory)  # runs never overlap (the lease), so any stream left here is a killed run's
        self.path = directory / f"run-{run_id}.parquet"
        self.stream_path = directory / f"run-{run_id}.arrows"
        self._sink: pa.NativeFile | None = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self.count = 0

    def extend(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """One committed batch's lines: (run_id, at, destination, kind, key, operation, changed_fields,
        outcome, reason), ``changed_fields`` a tuple of field names in any order (the log holds them
        sorted). Written and flushed to the operating system before returning."""
        if not rows:
            return
        if self._writer is None:
            self._sink = pa.OSFile(str(self.stream_path), "wb")
            self._writer = pa.ipc.new_stream(self._sink, SCHEMA)
        self._writer.write_table(_table(rows))
        assert self._sink is not None
        self._sink.flush()
        self.count += len(rows)

    def close(self) -> Path | None:
        if self._writer is None:
            return None
        self._writer.close()
        assert self._sink is not None
        self._sink.close()
        self._writer = self._sink = None
        return _to_parquet(self.stream_path, self.path)


def _table(rows: Sequence[tuple[Any, ...]]) -> pa.Table:
    columns: list[Any] = list(zip(*rows, strict=True))
    # Most records of a run change the same set of fields: each distinct set is sorted and converted
    # once, then repeated by Arrow (a conversion per record held the GIL ~5x longer, measured).
    distinct: dict[tuple[str, ...], int] = {}
    index = [distinct.setdefault(names, len(distinct)) for names in columns[FIELDS]]
    sets = pa.array([sorted(names) for names in distinct], SCHEMA.field(FIELDS).type)
    columns[FIELDS] = sets.take(pa.array(index, pa.int32()))
    return pa.table(dict(zip(SCHEMA.names, columns, strict=True)), schema=SCHEMA)


def _batches(stream: Path) -> Iterator[pa.RecordBatch]:
    """The complete batches of a stream; a killed run's last batch may be cut short and is dropped (its
    state commit had not happened either: the stream is written first)."""
    try:
        with pa.OSFile(str(stream), "rb") as source:
            reader = pa.ipc.open_stream(source)
            while True:
                try:
                    yield reader.read_next_batch()
                except StopIteration:
                    return
    except (pa.ArrowInvalid, OSError) as exc:
        log.debug("sync log %s ends early (%s); its complete batches are kept", stream, exc)


def _to_parquet(stream: Path, target: Path) -> Path | None:
    partial = target.with_suffix(".parquet.partial")
    writer: pq.ParquetWriter | None = None
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in _batches(stream):
        pending.append(batch)
        rows += batch.num_rows
        if rows >= ROW_GROUP:
            writer = writer or pq.ParquetWriter(partial, SCHEMA, compression="zstd")
            writer.write_table(pa.Table.from_batches(pending, SCHEMA))
            pending, rows = [], 0
    if pending:
        writer = writer or pq.ParquetWriter(partial, SCHEMA, compression="zstd")
        writer.write_table(pa.Table.from_batches(pending, SCHEMA))
    if writer is not None:
        writer.close()
        partial.replace(target)  # readers never see a half-written file under the final name
    stream.unlink(missing_ok=True)
    return target if writer is not None else None


def recover(directory: Path) -> list[Path]:
    """Turn the streams of killed runs into Parquet files, so their audit rows are queryable."""
    done = []
    for stream in sorted(directory.glob("run-*.arrows")):
        if (path := _to_parquet(stream, stream.with_suffix(".parquet"))) is not None:
            log.info("kept the sync log of an interrupted run: %s", path.name)
            done.append(path)
    return done


def prune(directory: Path, retention_days: int) -> int:
    """Delete sync logs older than the retention; 0 keeps everything."""
    if retention_days <= 0 or not directory.is_dir():
        return 0
    cutoff = time.time() - retention_days * 86400
    removed = 0
    for path in directory.glob("run-*.parquet*"):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
