"""Ownership of vendor records: one source key per vendor record, per destination and kind, across runs.

A CRM connector first *resolves* a key to a vendor record by its own lookups (the rules per vendor are in
docs/IDENTITY.md), then *claims* the record here before it writes anything to it. A claim is granted when
no other key owns the record -- neither in the state store (ids acknowledged in earlier runs) nor among the
claims granted earlier in this run. A refused claim is a conflict: the connector reports it with both keys,
as ``Outcome.conflict``, and writes nothing. The state store keeps the same rule as a unique index, and
``StateStore.commit_batch`` turns an acknowledgement that would break it into a conflict rather than an error.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from accoil_sync.sync.state import owners_of
from accoil_sync.traits.names import ObjectKind


class Ownership:
    """Who owns which vendor record of one destination. ``state_path=None`` (connector unit tests): this
    run's claims only."""

    def __init__(self, destination: str, state_path: Path | None = None) -> None:
        self.destination = destination
        self._db: sqlite3.Connection | None = None
        if state_path is not None and state_path.exists():
            # Read-only and separate from the engine's commit connection: claims are checked on the event
            # loop while the commit thread writes.
            self._db = sqlite3.connect(f"file:{state_path}?mode=ro", uri=True, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 30000")
        self._claims: dict[tuple[ObjectKind, str], str] = {}  # (kind, vendor id) -> key, this run

    def owners(self, kind: ObjectKind, dest_ids: Iterable[str]) -> dict[str, str]:
        """vendor id -> the key that owns it, for the ids that have an owner (this run's claims first)."""
        ids = list(dict.fromkeys(dest_ids))
        found = {i: self._claims[(kind, i)] for i in ids if (kind, i) in self._claims}
        rest = [i for i in ids if i not in found]
        if rest and self._db is not None:
            found.update(owners_of(self._db, self.destination, kind.value, rest))
        return found

    def claim(self, kind: ObjectKind, key: str, dest_id: str) -> str | None:
        """Claim ``dest_id`` for ``key``. Returns None when granted (or already ``key``'s), else the key
        that owns it."""
        owner = self.owners(kind, [dest_id]).get(dest_id)
        if owner is not None and owner != key:
            return owner
        self._claims[(kind, dest_id)] = key
        return None

    def release(self, kind: ObjectKind, key: str, dest_id: str) -> None:
        """Forget this run's claim (a stale id that turned out not to exist)."""
        if self._claims.get((kind, dest_id)) == key:
            del self._claims[(kind, dest_id)]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
