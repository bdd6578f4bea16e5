"""``plan --resolve``: what each planned write would do to which CRM record, by read-only lookups.

Changes are passed to the connector's ``resolve`` in its batch size, per kind; the answers are counted per
verdict (update, create, not_found, ambiguous, conflict) and the first reported ones kept with their
details (both keys of a conflict, the candidate ids of an ambiguity; for updates, a merge followed or an
email that changed in the source).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from accoil_sync.connectors.base import Change, Connector, Resolution
from accoil_sync.errors import DestinationError
from accoil_sync.traits.names import ObjectKind

log = logging.getLogger("accoil_sync.resolve")
VERDICTS = ("update", "create", "not_found", "ambiguous", "conflict")
# What a sync would be refused, in the order reports list them: what a person can act on (merge the
# duplicates, set the key) first.
REJECTED = ("conflict", "ambiguous", "not_found")
NOTABLE = 20  # reported resolutions kept per verdict


@dataclass(slots=True)
class ResolveReport:
    counts: dict[str, Counter[str]] = field(default_factory=dict)  # kind -> verdict -> objects
    notable: list[tuple[str, Resolution]] = field(default_factory=list)  # (kind, reported resolution)
    stopped: str | None = None

    @property
    def rejections(self) -> int:
        """Objects a sync would have refused: not found (creation off), ambiguous, or owned by another key."""
        return sum(c[v] for c in self.counts.values() for v in REJECTED)

    def to_json(self) -> dict[str, Any]:
        # Conflicts and ambiguities first: they are what a person can act on (merge, set the key).
        order = {v: i for i, v in enumerate(REJECTED)}
        reported = sorted(self.notable, key=lambda item: order.get(item[1].verdict, len(order)))
        return {
            "counts": {kind: {v: c[v] for v in VERDICTS} for kind, c in self.counts.items()},
            "reported": [
                {"kind": kind, "key": r.key, "verdict": r.verdict, "dest_id": r.dest_id, "detail": r.detail}
                for kind, r in reported
            ],
            "stopped": self.stopped,
        }


class Resolver:
    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.report = ResolveReport()
        self._pending: dict[ObjectKind, list[Change]] = {}
        self._kept: Counter[str] = Counter()

    async def add(self, change: Change) -> None:
        if change.op == "refresh" or self.report.stopped:
            return  # a refresh writes nothing
        batch = self._pending.setdefault(change.kind, [])
        batch.append(change)
        if len(batch) >= self.connector.capabilities.max_batch:
            await self._flush(change.kind)

    async def finish(self) -> ResolveReport:
        for kind in list(self._pending):
            await self._flush(kind)
        return self.report

    async def _flush(self, kind: ObjectKind) -> None:
        batch, self._pending[kind] = self._pending.get(kind, []), []
        if not batch or self.report.stopped:
            return
        try:
            answers: list[Resolution] = await self.connector.resolve(kind, batch)  # type: ignore[attr-defined]
        except DestinationError as exc:
            self.report.stopped = str(exc)
            log.error("%s: resolving stopped: %s", self.connector.name, exc)
            return
        counts = self.report.counts.setdefault(kind.value, Counter())
        for answer in answers:
            counts[answer.verdict] += 1
            worth_saying = answer.verdict not in ("update", "create") or answer.detail
            # Per verdict, so that many not-found users never crowd out the two ambiguous companies.
            if worth_saying and self._kept[answer.verdict] < NOTABLE:
                self._kept[answer.verdict] += 1
                self.report.notable.append((kind.value, answer))
