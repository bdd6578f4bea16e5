"""The run ledger (each run's start, end, counts and failure classes), the failure reports ``status`` and
``failures`` read, and small facts that must survive restarts: the state store's parts that are not the
per-record delivery state (a mixin of ``StateStore``, on its connection)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from accoil_sync.sync.store_common import guarded, now_iso, reason_class_of


@dataclass(frozen=True, slots=True)
class FailingRecord:
    destination: str
    kind: str
    key: str
    status: str  # retryable | rejected
    reason_class: str  # connectors.base.ReasonClass
    reason: str  # the vendor's words; may name the key or the email, so only shown on request
    attempts: int
    updated_at: str
    dest_id: str | None


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    command: str
    started_at: str
    ended_at: str | None
    status: str
    exit_code: int | None
    invalid_rows: int
    message: str | None
    counts: dict[str, dict[str, int]]


class Transaction(Protocol):
    def __enter__(self) -> sqlite3.Connection: ...

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None: ...


class Ledger:
    # Provided by StateStore: its connection, its file, and its write transactions.
    db: sqlite3.Connection
    path: Path

    def transaction(self) -> Transaction:
        raise NotImplementedError

    @guarded("read it")
    def failure_counts(self) -> list[tuple[str, str, int]]:
        return [
            (r[0], r[1], int(r[2]))
            for r in self.db.execute(
                "SELECT destination, status, count(*) FROM records WHERE status != 'ok' "
                "GROUP BY destination, status ORDER BY destination, status"
            )
        ]

    @guarded("read it")
    def failure_classes(self) -> list[tuple[str, str, str, int]]:
        """(destination, status, reason class, count) of the records failing now, largest first: stable
        groups, where grouping by the reason's text made one group per key or email."""
        return [
            (r[0], r[1], reason_class_of(r[1], r[2]), int(r[3]))
            for r in self.db.execute(
                "SELECT destination, status, reason_class, count(*) AS n FROM records WHERE status != 'ok' "
                "GROUP BY destination, status, reason_class ORDER BY n DESC, destination, status"
            )
        ]

    @guarded("read it")
    def failures(
        self,
        *,
        destination: str | None = None,
        kind: str | None = None,
        reason_class: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[FailingRecord]:
        """The records failing now, oldest attempt first, with their class and the vendor's reason."""
        rows = self.db.execute(
            "SELECT destination, kind, key, status, reason_class, last_error, attempts, updated_at, dest_id "
            "FROM records WHERE status != 'ok' AND (?1 IS NULL OR destination = ?1) AND (?2 IS NULL OR kind = ?2) "
            "AND (?3 IS NULL OR status = ?3) ORDER BY updated_at, destination, kind, key",
            (destination, kind, status),
        )
        out: list[FailingRecord] = []
        for r in rows:
            cls = reason_class_of(r[3], r[4])
            if reason_class is not None and cls != reason_class:
                continue
            out.append(FailingRecord(r[0], r[1], r[2], r[3], cls, r[5] or "", int(r[6]), r[7], r[8]))
            if limit is not None and len(out) >= limit:
                break
        return out

    @guarded("read it")
    def rejected_keys(
        self,
        destination: str,
        kind: str,
        *,
        classes: Sequence[str] | None = None,
        after_seconds: float = 0.0,
        max_seconds: float = 0.0,
        limit: int | None = None,
    ) -> list[str]:
        """Rejected keys, oldest attempt first: all of them, or those of ``classes`` whose back-off
        (``after_seconds * 2^(attempts-1)``, at most ``max_seconds``) has passed (sync/heal.py)."""
        due = (
            "AND julianday('now') - julianday(substr(updated_at, 1, 19)) >= "
            "min(?4 * (1 << min(max(attempts, 1) - 1, 30)), ?5) / 86400.0"
            if classes is not None
            else "AND ?4 IS NOT NULL AND ?5 IS NOT NULL"
        )
        rows = self.db.execute(
            "SELECT key FROM records WHERE destination = ?1 AND kind = ?2 AND status = 'rejected' "
            "AND (?3 IS NULL OR reason_class IN (SELECT value FROM json_each(?3))) "
            f"{due} ORDER BY updated_at, key LIMIT coalesce(?6, -1)",
            (
                destination,
                kind,
                None if classes is None else orjson.dumps(list(classes)),
                after_seconds,
                max_seconds,
                limit,
            ),
        ).fetchall()
        return [r[0] for r in rows]

    @guarded("read it")
    def is_new(self) -> bool:
        """No run was ever started on this store and it holds no record (sync/continuity.py)."""
        row = self.db.execute("SELECT NOT EXISTS (SELECT 1 FROM runs) AND NOT EXISTS (SELECT 1 FROM records)")
        return bool(row.fetchone()[0])

    @guarded("read it")
    def run_reasons(self, run_id: str) -> dict[str, dict[str, int]]:
        """Failures of one run per destination and reason class."""
        out: dict[str, dict[str, int]] = {}
        for dest, reason, n in self.db.execute(
            "SELECT destination, reason, count FROM run_failures WHERE run_id = ? ORDER BY destination, reason",
            (run_id,),
        ):
            out.setdefault(dest, {})[reason] = int(n)
        return out

    # -------------------------------------------------------------------------------------------- runs

    def start_run(self, run_id: str, command: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO runs (run_id, command, started_at, status) VALUES (?, ?, ?, 'running')",
                (run_id, command, now_iso()),
            )

    def add_counts(
        self, run_id: str, destination: str, counts: dict[str, int], reasons: dict[str, int]
    ) -> None:
        """``reasons``: failures by reason class (``run_failures.reason`` holds the class since 0.2)."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO run_counts VALUES (?, ?, ?, ?) ON CONFLICT (run_id, destination, outcome) "
                "DO UPDATE SET count = count + excluded.count",
                [(run_id, destination, k, v) for k, v in counts.items() if v],
            )
            db.executemany(
                "INSERT INTO run_failures VALUES (?, ?, ?, ?) ON CONFLICT (run_id, destination, reason) "
                "DO UPDATE SET count = count + excluded.count",
                [(run_id, destination, k[:500], v) for k, v in reasons.items()],
            )

    def finish_run(
        self, run_id: str, status: str, exit_code: int, invalid_rows: int, message: str | None
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET ended_at = ?, status = ?, exit_code = ?, invalid_rows = ?, message = ? "
                "WHERE run_id = ?",
                (now_iso(), status, exit_code, invalid_rows, message, run_id),
            )

    def mark_interrupted(self, holder: str) -> int:
        """Runs still 'running' when ``holder`` starts one were killed: say so instead of leaving them open
        forever. Only while ``holder`` holds the sync lease (or nobody does): a run whose process is alive
        renews the lease, so its 'running' is true and is left alone."""
        with self.transaction() as db:
            other = db.execute(
                "SELECT holder FROM leases WHERE name = 'sync' AND expires_at >= ? AND holder != ?",
                (time.time(), holder),
            ).fetchone()
            if other is not None:
                return 0
            return db.execute(
                "UPDATE runs SET status = 'interrupted', ended_at = coalesce(ended_at, ?) WHERE status = 'running'",
                (now_iso(),),
            ).rowcount

    @guarded("read it")
    def runs(self, limit: int = 10, run_id: str | None = None) -> list[RunSummary]:
        out = []
        for row in self.db.execute(
            "SELECT run_id, command, started_at, ended_at, status, exit_code, invalid_rows, message FROM runs "
            "WHERE ? IS NULL OR run_id = ? ORDER BY started_at DESC LIMIT ?",
            (run_id, run_id, limit),
        ).fetchall():
            counts: dict[str, dict[str, int]] = {}
            for dest, outcome, n in self.db.execute(
                "SELECT destination, outcome, count FROM run_counts WHERE run_id = ? ORDER BY destination, outcome",
                (row[0],),
            ):
                counts.setdefault(dest, {})[outcome] = int(n)
            out.append(
                RunSummary(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], counts=counts)
            )
        return out

    # ------------------------------------------------------------------------------------------- facts

    @guarded("read it")
    def get_fact(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM facts WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_fact(self, name: str, value: str | None) -> None:
        with self.transaction() as db:
            if value is None:
                db.execute("DELETE FROM facts WHERE name = ?", (name,))
            else:
                db.execute(
                    "INSERT INTO facts VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (name, value),
                )


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + f"-{int(time.time_ns() % 1_000_000):06d}"
