"""Read side of the card's data: find one object by what HubSpot sends, and its history.

A read-only SQLite connection per server process. Lookups are single indexed point queries (tens of
microseconds), so they run on the event loop rather than paying a thread hop per request.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from accoil_sync.traits.names import ObjectKind


@dataclass(frozen=True, slots=True)
class CardObject:
    kind: ObjectKind
    key: str
    record: dict[str, Any]
    updated_at: str


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    at: str
    run_id: str
    record: dict[str, Any] | None  # None: the object left the source


class CardReader:
    def __init__(self, state_path: Path) -> None:
        self.path = state_path
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is None:
            if not self.path.exists():
                return None  # nothing synced yet: every lookup is "unknown object"
            self._db = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA busy_timeout = 2000")
        return self._db

    def ready(self) -> bool:
        db = self._conn()
        if db is None:
            return False
        return int(db.execute("PRAGMA user_version").fetchone()[0]) >= 2

    def find(
        self,
        kind: ObjectKind,
        *,
        key: str | None = None,
        hubspot_id: str | None = None,
        email: str | None = None,
        domain: str | None = None,
    ) -> CardObject | None:
        """Our own id first (exact), then the HubSpot record id our syncs stored, then email or domain."""
        db = self._conn()
        if db is None:
            return None
        select = "SELECT key, record, updated_at FROM card_objects WHERE kind = ? AND "
        row = None
        if key:
            row = db.execute(select + "key = ?", (kind.value, key)).fetchone()
        if row is None and hubspot_id:
            found = db.execute(
                "SELECT key FROM records WHERE destination = 'hubspot' AND kind = ? AND dest_id = ?",
                (kind.value, hubspot_id),
            ).fetchone()
            if found:
                row = db.execute(select + "key = ?", (kind.value, found[0])).fetchone()
        if row is None and email and kind is ObjectKind.USER:
            row = db.execute(
                select + "email = ? ORDER BY key LIMIT 1", (kind.value, email.lower())
            ).fetchone()
        if row is None and domain and kind is ObjectKind.ACCOUNT:
            row = db.execute(
                select + "domain = ? ORDER BY key LIMIT 1", (kind.value, bare_domain(domain))
            ).fetchone()
        if row is None:
            return None
        return CardObject(kind, row[0], orjson.loads(row[1]), row[2])

    def history(self, kind: ObjectKind, key: str, limit: int = 200) -> list[HistoryPoint]:
        db = self._conn()
        if db is None:
            return []
        rows = db.execute(
            "SELECT at, run_id, record FROM card_history WHERE kind = ? AND key = ? "
            "ORDER BY version DESC LIMIT ?",
            (kind.value, key, limit),
        ).fetchall()
        return [HistoryPoint(r[0], r[1], orjson.loads(r[2]) if r[2] else None) for r in reversed(rows)]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def bare_domain(value: str) -> str:
    """HubSpot's company domain is a bare host; people paste URLs."""
    value = value.strip().lower()
    value = value.split("://", 1)[-1].split("/", 1)[0]
    return value.removeprefix("www.")
