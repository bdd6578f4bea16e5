"""The ``card`` destination: the metrics the HubSpot card shows, kept in the state store.

Treating the card's data as one more destination gives it the planner's change detection for free (an
unchanged object costs no write) and a history: every acknowledged change appends one ``card_history`` row
keyed by delivery version, so a batch repeated after a crash rewrites its rows instead of doubling them.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from accoil_sync.card.store import bare_domain
from accoil_sync.config.models import CardDestination
from accoil_sync.connectors.base import Capabilities, Change, Outcome
from accoil_sync.sync.guards import HELD_PREFIX
from accoil_sync.sync.state import StateStore, now_iso
from accoil_sync.traits.encoders import Encoder, FieldValue, TraitsEncoder
from accoil_sync.traits.model import ObjectRecord
from accoil_sync.traits.names import ObjectKind


class CardEncoder(TraitsEncoder):
    """The traits plus what the card looks objects up by, so a changed email or domain is re-stored."""

    signature = "card/1"
    explanations = True  # the planner compares the staged explanations too (sync/planner.py)

    def encode(self, record: ObjectRecord) -> dict[str, FieldValue]:
        out = super().encode(record)
        for name in ("email", "domain", "name"):
            if (value := getattr(record, name)) is not None:
                out[f"_{name}"] = value
        # An events source's explanations: a digest stands for each (the state keeps acknowledged fields,
        # the card table keeps the document), so a changed explanation is re-stored like a changed metric.
        for profile, explanation in record.explanations.items():
            digest = hashlib.blake2b(orjson.dumps(explanation, option=orjson.OPT_SORT_KEYS), digest_size=12)
            out[f"_explain:{profile}"] = digest.hexdigest()
        return out


def card_record(record: ObjectRecord) -> dict[str, Any]:
    """The card's document of one object. ``explanations`` (events sources only) is kept for the current
    values alone, not in the history."""
    return {
        "name": record.name,
        "email": record.email,
        "domain": record.domain,
        "account_id": record.account_id,
        "computed_at": record.computed_at,
        "metrics": {
            profile: {metric.value: list(v) if isinstance(v, tuple) else v for metric, v in values.items()}
            for profile, values in record.metrics.items()
        },
        **({"explanations": dict(record.explanations)} if record.explanations else {}),
    }


class CardStoreConnector:
    name = "card"

    def __init__(self, cfg: CardDestination, state_path: Path, run_id: str) -> None:
        # Its own connection: the engine commits on another one while a batch is written here.
        self.state = StateStore(state_path)
        self.run_id = run_id
        self.capabilities = Capabilities(max_batch=cfg.batch_size, max_concurrency=1)
        self.encoder: Encoder = CardEncoder()

    async def ensure_schema(self) -> None:
        return None  # the state store's migrations made the tables

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        await asyncio.to_thread(self._write, kind, batch)
        return [Outcome.ok(c.key) for c in batch]

    def _write(self, kind: ObjectKind, batch: Sequence[Change]) -> None:
        stamp = now_iso()
        upserts: list[tuple[Any, ...]] = []
        deletes: list[tuple[str, str]] = []
        history: list[tuple[Any, ...]] = []
        for change in batch:
            version = change.version + 1
            if change.op == "clear" or change.record is None:
                deletes.append((kind.value, change.key))
                history.append((kind.value, change.key, version, self.run_id, stamp, None))
                continue
            record = change.record
            document = card_record(record)
            if change.fingerprint.startswith(HELD_PREFIX):
                document = self._keep_missing_profiles(kind, change.key, document)
            body = orjson.dumps(document).decode()
            past = body
            if "explanations" in document:
                past = orjson.dumps({k: v for k, v in document.items() if k != "explanations"}).decode()
            email = record.email.lower() if record.email else None
            domain = bare_domain(record.domain) if record.domain else None
            upserts.append((kind.value, change.key, email, domain, body, version, stamp))
            if any(not name.startswith("_explain:") for name in change.fields):
                # A changed explanation alone is no new point of the score history.
                history.append((kind.value, change.key, version, self.run_id, stamp, past))
        with self.state.transaction() as db:
            db.executemany(
                "INSERT INTO card_objects VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET "
                "email = excluded.email, domain = excluded.domain, record = excluded.record, "
                "version = excluded.version, updated_at = excluded.updated_at",
                upserts,
            )
            db.executemany("DELETE FROM card_objects WHERE kind = ? AND key = ?", deletes)
            db.executemany("INSERT OR REPLACE INTO card_history VALUES (?, ?, ?, ?, ?, ?)", history)

    def _keep_missing_profiles(self, kind: ObjectKind, key: str, document: dict[str, Any]) -> dict[str, Any]:
        """An object with an invalid row lacks that row's profile: the card keeps what it showed for it."""
        row = self.state.db.execute(
            "SELECT record FROM card_objects WHERE kind = ? AND key = ?", (kind.value, key)
        ).fetchone()
        if row is None:
            return document
        before = orjson.loads(row[0])
        merged = {**document, "metrics": {**before.get("metrics", {}), **document["metrics"]}}
        explanations = {**before.get("explanations", {}), **document.get("explanations", {})}
        if explanations:
            merged["explanations"] = {p: e for p, e in explanations.items() if p in merged["metrics"]}
        return merged

    async def aclose(self) -> None:
        self.state.close()
