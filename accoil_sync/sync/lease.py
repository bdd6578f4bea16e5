"""A lease in the state store: at most one sync at a time, across processes and replicas sharing the store.

A holder renews its lease while it works; a lease that was not renewed before ``expires_at`` belonged to a
process that died, and the next taker gets it. Taking, renewing and releasing are single statements inside
``BEGIN IMMEDIATE`` transactions, so two takers can never both succeed.
"""

from __future__ import annotations

import time

from accoil_sync.sync.state import StateStore

SYNC_LEASE = "sync"


class Lease:
    def __init__(self, state: StateStore, holder: str, *, name: str = SYNC_LEASE, ttl: float = 60.0) -> None:
        self.state = state
        self.holder = holder
        self.name = name
        self.ttl = ttl

    def acquire(self) -> bool:
        now = time.time()
        with self.state.transaction() as db:
            cur = db.execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET holder = excluded.holder, expires_at = excluded.expires_at "
                "WHERE leases.expires_at < ? OR leases.holder = excluded.holder",
                (self.name, self.holder, now + self.ttl, now),
            )
            return cur.rowcount == 1

    def renew(self) -> bool:
        with self.state.transaction() as db:
            cur = db.execute(
                "UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ?",
                (time.time() + self.ttl, self.name, self.holder),
            )
            return cur.rowcount == 1

    def release(self) -> None:
        with self.state.transaction() as db:
            db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (self.name, self.holder))

    def holder_now(self) -> str | None:
        row = self.state.db.execute(
            "SELECT holder FROM leases WHERE name = ? AND expires_at >= ?", (self.name, time.time())
        ).fetchone()
        return None if row is None else str(row[0])
