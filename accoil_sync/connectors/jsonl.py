"""The built-in ``jsonl`` destination: every acknowledged change appended to a file, one JSON object a line.

It is an audit trail and the demo's first sink. A batch counts as acknowledged once it is written and
fsynced. Appending is all or nothing: a write that fails part-way (a full disk) is cut back off, and a
batch whose state commit then fails is taken back (``discard``), so a state store that cannot record
deliveries does not make each retry append the batch again. Only a kill between the append and the commit
can still repeat a batch: each line carries ``delivery_id`` (object, delivery version, values) so readers
can drop the repeat.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from accoil_sync.config.models import JsonlDestination
from accoil_sync.connectors.base import Capabilities, Change, Outcome
from accoil_sync.errors import DestinationUnavailable
from accoil_sync.sync.state import now_iso
from accoil_sync.traits.encoders import Encoder, TraitsEncoder
from accoil_sync.traits.names import ObjectKind


def delivery_id(change: Change) -> str:
    body = json.dumps([change.kind, change.key, change.version, change.fields], sort_keys=True, default=str)
    return hashlib.sha256((body + change.salt).encode()).hexdigest()[:32]


class JsonlConnector:
    name = "jsonl"

    def __init__(self, cfg: JsonlDestination, run_id: str) -> None:
        self.path = Path(cfg.path)
        self.run_id = run_id
        self.capabilities = Capabilities(max_batch=cfg.batch_size, max_concurrency=1)
        self.encoder: Encoder = TraitsEncoder()
        self._lock = asyncio.Lock()
        # (start, end, discarded) of each batch appended by this run, in file order: a discarded batch
        # is cut off once every batch after it is discarded too.
        self._regions: list[list[Any]] = []
        self._batches: dict[int, list[Any]] = {}

    async def ensure_schema(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        stamp = now_iso()
        lines = [
            json.dumps(
                {
                    "delivery_id": delivery_id(c),
                    "run_id": self.run_id,
                    "at": stamp,
                    "kind": c.kind.value,
                    "key": c.key,
                    "op": c.op,
                    "fields": c.fields,
                },
                ensure_ascii=False,
                sort_keys=True,
            )
            for c in batch
        ]
        async with self._lock:
            start, end = await asyncio.to_thread(self._append, ("\n".join(lines) + "\n").encode())
            region = [start, end, False]
            self._regions.append(region)
            self._batches[id(batch)] = region
        return [Outcome.ok(c.key) for c in batch]

    def _append(self, data: bytes) -> tuple[int, int]:
        with self.path.open("ab") as fh:
            start = fh.seek(0, os.SEEK_END)
            try:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as exc:
                fh.truncate(start)  # no half batch left behind for a reader, nor repeated by the retry
                raise DestinationUnavailable(f"jsonl: cannot append to {self.path}: {exc}") from exc
            return start, start + len(data)

    async def discard(self, kind: ObjectKind, batch: Sequence[Change]) -> None:
        """Take back a batch the state store could not record (see the module docstring)."""
        async with self._lock:
            region = self._batches.pop(id(batch), None)
            if region is None:
                return
            region[2] = True
            cut: int | None = None
            while self._regions and self._regions[-1][2]:
                cut = self._regions.pop()[0]
            if cut is not None:
                await asyncio.to_thread(self._truncate, cut)

    def _truncate(self, size: int) -> None:
        with self.path.open("r+b") as fh:
            fh.truncate(size)
            os.fsync(fh.fileno())

    async def aclose(self) -> None:
        return None
