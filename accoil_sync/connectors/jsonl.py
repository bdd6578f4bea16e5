"""The built-in ``jsonl`` destination: every acknowledged change appended to a file, one JSON object a line.

It is an audit trail and the demo's first sink. A batch counts as acknowledged once it is written and
fsynced, so a crash before the state commit can repeat a batch: each line carries ``delivery_id`` (object,
delivery version, values) so readers can drop the repeat.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from accoil_sync.config.models import JsonlDestination
from accoil_sync.connectors.base import Capabilities, Change, Outcome
from accoil_sync.sync.state import now_iso
from accoil_sync.traits.encoders import Encoder, TraitsEncoder
from accoil_sync.traits.names import ObjectKind


def delivery_id(change: Change) -> str:
    body = json.dumps([change.kind, change.key, change.version, change.fields], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


class JsonlConnector:
    name = "jsonl"

    def __init__(self, cfg: JsonlDestination, run_id: str) -> None:
        self.path = Path(cfg.path)
        self.run_id = run_id
        self.capabilities = Capabilities(max_batch=cfg.batch_size, max_concurrency=1)
        self.encoder: Encoder = TraitsEncoder()
        self._lock = asyncio.Lock()

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
            await asyncio.to_thread(self._append, "\n".join(lines) + "\n")
        return [Outcome.ok(c.key) for c in batch]

    def _append(self, text: str) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    async def aclose(self) -> None:
        return None
