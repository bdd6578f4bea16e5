"""Progress of a run's three phases -- reading the source, planning, delivering -- with totals where they
are known, for the terminal (``cli.py`` draws them; JSON logs get none).

The runner reports through ``Progress``; its totals are cheap to know in advance:

- reading: rows in the source files (Parquet metadata; newlines of CSV/JSON Lines, counted at disk speed);
  SQL sources have no total;
- planning and delivering: the objects whose fingerprint differs, counted in DuckDB per kind as the
  planner reaches it (one join, only when progress is shown), so both totals grow kind by kind.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

import pyarrow.parquet as pq

from accoil_sync.config.models import SourceConfig
from accoil_sync.errors import SourceError
from accoil_sync.sources import Stage, load_stage, raw_chunks
from accoil_sync.sources.base import RawChunk
from accoil_sync.sources.files import expand, file_format
from accoil_sync.traits.names import ObjectKind


class Task(Protocol):
    def advance(self, n: int) -> None: ...

    def add_total(self, n: int) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: int | None) -> Task:
        """A new bar; ``total`` None until ``add_total`` says (or forever, for an unknown total)."""
        ...


class PlanProgress:
    """What the planner reports, per destination: a plan task and a delivery task (None: not shown)."""

    def __init__(self, plan: Task, deliver: Task | None) -> None:
        self.plan = plan
        self.deliver = deliver

    def candidates(self, n: int) -> None:
        """The objects of one kind that will be planned (their fingerprint differs, or they left)."""
        self.plan.add_total(n)
        if self.deliver is not None:
            self.deliver.add_total(n)

    def planned(self, n: int) -> None:
        self.plan.advance(n)


def load_with_progress(
    stage: Stage,
    cfg: SourceConfig,
    progress: Progress | None,
    expected: Mapping[ObjectKind, Collection[str]] | None = None,
    *,
    explain: bool = True,
) -> None:
    """``sources.load_stage``, with a bar per kind that has a source."""
    if progress is None or cfg.kind == "events":  # events: scored first, their rows are not read here
        load_stage(stage, cfg, expected, explain=explain)
        return
    for kind in ObjectKind:
        spec = cfg.users if kind is ObjectKind.USER else cfg.accounts
        chunks = raw_chunks(kind, cfg, (expected or {}).get(kind, ()))
        if spec:
            chunks = counted(chunks, progress.task(f"reading {kind.value}s", source_rows(spec, cfg)))
        stage.load(kind, chunks, cfg)


def counted(chunks: Iterable[RawChunk], task: Task) -> Iterator[RawChunk]:
    for chunk in chunks:
        task.advance(chunk.table.num_rows)
        yield chunk


def source_rows(spec: str | None, cfg: SourceConfig) -> int | None:
    """The rows a files source holds (an estimate for text: newlines less one header line per CSV file),
    or None when it cannot be known without running the query."""
    if not spec or cfg.kind != "files":
        return None
    total = 0
    try:
        paths = expand(spec)
    except SourceError:  # reported by the reader
        return None
    for path in paths:
        try:
            fmt = file_format(path, cfg.format)
            if fmt == "parquet":
                total += pq.ParquetFile(path).metadata.num_rows
            else:
                total += _lines(path) - (1 if fmt == "csv" else 0)
        except Exception:  # an unreadable file is reported by the reader, with its reason
            continue
    return max(total, 0)


def _lines(path: Path) -> int:
    count, last = 0, b"\n"
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (0 if last == b"\n" else 1)
