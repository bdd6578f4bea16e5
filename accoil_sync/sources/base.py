"""What every reader yields: Arrow chunks of raw rows, plus the rows it could not even parse."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

from accoil_sync.traits.names import ObjectKind

FILE_COLUMN = "_file"
ROW_COLUMN = "_row"
# An events source's explanation of a row's score (JSON text): kept beside the metrics for the card.
EXPLAIN_COLUMN = "_explain"
# A digest of what in it is the object's own (not the population's P90 anchor): what the card compares.
EXPLAIN_FP_COLUMN = "_explain_fp"
INTERNAL_COLUMNS = (FILE_COLUMN, ROW_COLUMN, EXPLAIN_COLUMN, EXPLAIN_FP_COLUMN)
Scope = Literal["row", "file", "rest"]


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem with one input row. ``row`` is the line for CSV/JSONL, the record number otherwise."""

    kind: ObjectKind
    file: str
    row: int | None
    column: str | None
    reason: str
    key: str | None = None
    # "row": this row only. "file": nothing of the file was used (its rows already read are dropped).
    # "rest": the file broke midway; the rows read before stay. Both file scopes mean the source was not
    # read completely, so no object is removed on its evidence.
    scope: Scope = "row"

    def __str__(self) -> str:
        where = f"{self.file}:{self.row}" if self.row is not None else self.file
        column = f" [{self.column}]" if self.column else ""
        return f"{where}{column} {self.reason}"

    @property
    def file_level(self) -> bool:
        return self.scope != "row"


@dataclass(slots=True)
class RawChunk:
    """Raw rows renamed to canonical column names, with ``_file`` and ``_row``; values still unvalidated."""

    table: pa.Table
    errors: list[RowError] = field(default_factory=list)


def with_position(table: pa.Table, file: str, rows: list[int] | pa.Array) -> pa.Table:
    table = table.append_column(FILE_COLUMN, pa.array([file] * table.num_rows, pa.string()))
    return table.append_column(ROW_COLUMN, pa.array(rows, pa.int64()))
