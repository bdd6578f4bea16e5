"""The state store: what each destination last acknowledged, per object (the run ledger and the failure
reports are its ``Ledger`` part, sync/ledger.py; the schema is sync/migrations.py).

SQLite in WAL mode. Every write happens inside one transaction per delivered batch, so a kill -9 at any
moment leaves either the batch's outcomes or none of them -- never half. The schema is versioned with
``PRAGMA user_version`` and migrated forward in order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Iterator, KeysView, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from accoil_sync.errors import StateStoreError
from accoil_sync.sync import pending
from accoil_sync.sync.ledger import Ledger, new_run_id
from accoil_sync.sync.migrations import MIGRATIONS
from accoil_sync.sync.store_common import (
    BUSY_SECONDS,
    CLEARED,
    STATUS_OK,
    STATUS_REJECTED,
    STATUS_RETRYABLE,
    explain,
    guarded,
    now_iso,
    reason_class_of,
)
from accoil_sync.traits.encoders import FieldValue

# Re-exported: the names callers have always imported from here.
__all__ = [
    "BUSY_SECONDS",
    "CLEARED",
    "MIGRATIONS",
    "STATUS_OK",
    "STATUS_REJECTED",
    "STATUS_RETRYABLE",
    "Acknowledged",
    "Failed",
    "StateStore",
    "StoredRecord",
    "explain",
    "new_run_id",
    "now_iso",
    "owners_of",
    "reason_class_of",
]


@dataclass(frozen=True, slots=True)
class StoredRecord:
    key: str
    fingerprint: str | None
    fields: dict[str, FieldValue]
    dest_id: str | None
    version: int
    status: str
    attempts: int


@dataclass(slots=True)  # not frozen: one per delivered record, and a frozen init costs twice as much
class Acknowledged:
    key: str
    fingerprint: str
    fields: dict[str, FieldValue]  # the fields just delivered; merged over what was there
    dest_id: str | None
    replace: bool = False  # True when ``fields`` is the whole new set (clear, full refresh)
    # The fields the change settled (a clear's too): they leave the key's write-ahead note.
    written: Collection[str] = ()


@dataclass(frozen=True, slots=True)
class Failed:
    key: str
    fingerprint: str
    status: str  # retryable | rejected
    reason: str
    reason_class: str | None = None  # connectors.base.ReasonClass


def owners_of(db: sqlite3.Connection, destination: str, kind: str, dest_ids: Iterable[str]) -> dict[str, str]:
    """vendor id -> the key whose record holds it, for the ids some key owns (the unique index's rule)."""
    return {
        str(dest_id): str(key)
        for dest_id, key in db.execute(
            "SELECT dest_id, key FROM records WHERE destination = ? AND kind = ? "
            "AND dest_id IN (SELECT value FROM json_each(?))",
            (destination, kind, orjson.dumps(list(dest_ids))),
        )
    }


class StateStore(Ledger):
    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        """``readonly``: for ``status`` and ``failures``, which must work on a store they may not write."""
        self.path = path
        # (destination, kind) -> key -> the fields of the note this store wrote for a key that had none,
        # until acknowledged (see ``note``)
        self._fresh: dict[tuple[str, str], dict[str, KeysView[str]]] = {}
        try:
            if readonly:
                self.db = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    timeout=BUSY_SECONDS,
                    check_same_thread=False,
                )
                self._check_version(readonly=True)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            self.db = sqlite3.connect(
                path, isolation_level=None, timeout=BUSY_SECONDS, check_same_thread=False
            )
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute(
                "PRAGMA synchronous = NORMAL"
            )  # WAL + NORMAL: durable at checkpoints, never corrupt
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_SECONDS * 1000}")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            if getattr(self, "db", None) is not None:
                self.db.close()
            raise explain(path, "open it", exc) from exc

    # ------------------------------------------------------------------------------------------- schema

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _check_version(self, *, readonly: bool = False) -> int:
        current = self.schema_version
        if current > len(MIGRATIONS):
            self.db.close()
            raise StateStoreError(
                f"state store {self.path}: schema version {current} was written by a newer accoil-sync than "
                f"this one (which understands {len(MIGRATIONS)}); upgrade accoil-sync, or restore the backup "
                "taken before the upgrade (docs/DEPLOY.md)"
            )
        if readonly and current < len(MIGRATIONS):
            self.db.close()
            raise StateStoreError(
                f"state store {self.path}: schema version {current} is older than this accoil-sync's "
                f"({len(MIGRATIONS)}); run `accoil-sync sync` (or `plan`) once to migrate it"
            )
        return current

    def _migrate(self) -> None:
        current = self._check_version()
        for version, sql in enumerate(MIGRATIONS[current:], start=current + 1):
            with self.transaction():
                for statement in filter(None, (s.strip() for s in sql.split(";"))):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {version}")

    # --------------------------------------------------------------------------------------- transactions

    class _Tx:
        def __init__(self, store: StateStore) -> None:
            self.db = store.db
            self.path = store.path

        def __enter__(self) -> sqlite3.Connection:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise explain(self.path, "start a transaction", exc) from exc
            return self.db

        def __exit__(self, exc_type: Any, exc: BaseException | None, _tb: Any) -> None:
            if exc_type is None:
                try:
                    self.db.execute("COMMIT")
                    return
                except sqlite3.Error as failed:
                    exc = failed
            if self.db.in_transaction:
                # SQLite rolls back by itself when it cannot (a full disk, an I/O error)
                with suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise explain(self.path, "record a write", exc) from exc

    def transaction(self) -> StateStore._Tx:
        return StateStore._Tx(self)

    # ----------------------------------------------------------------------------------------- records

    def fingerprints(
        self, destination: str, kind: str, size: int = 100_000
    ) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
        """("ok", [(key, fingerprint)]) chunks for the records in good standing, then ("failing", [(key,
        fingerprint, status, failed_fingerprint)]) for the rest: the common case moves two columns, not four."""
        try:
            yield from self._fingerprints(destination, kind, size)
        except sqlite3.Error as exc:
            raise explain(self.path, "read it", exc) from exc

    def _fingerprints(
        self, destination: str, kind: str, size: int
    ) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
        cur = self.db.execute(
            "SELECT key, fingerprint FROM records WHERE destination = ? AND kind = ? AND status = 'ok'",
            (destination, kind),
        )
        while rows := cur.fetchmany(size):
            yield "ok", rows
        cur = self.db.execute(
            "SELECT key, fingerprint, status, failed_fingerprint FROM records "
            "WHERE destination = ? AND kind = ? AND status != 'ok'",
            (destination, kind),
        )
        while rows := cur.fetchmany(size):
            yield "failing", rows

    @guarded("read it")
    def load(self, destination: str, kind: str, keys: Sequence[str]) -> dict[str, StoredRecord]:
        if not keys:
            return {}
        # The keys go in as one JSON parameter, not one statement per chunk of keys.
        rows = self.db.execute(
            "SELECT key, fingerprint, fields, dest_id, version, status, attempts FROM records "
            "WHERE destination = ? AND kind = ? AND key IN (SELECT value FROM json_each(?))",
            (destination, kind, orjson.dumps(keys)),
        ).fetchall()
        return {r[0]: StoredRecord(r[0], r[1], orjson.loads(r[2]), r[3], r[4], r[5], r[6]) for r in rows}

    def commit_batch(
        self, destination: str, kind: str, acknowledged: Iterable[Acknowledged], failed: Iterable[Failed]
    ) -> None:
        """One transaction for one delivered batch: acknowledged writes and failures together.

        Each write is one statement over a JSON array of rows, not ``executemany``: that releases and
        re-takes the GIL around every row, and on the commit thread each re-take can wait out the event
        loop's switch interval (40 batches took 49 s instead of 1 s beside a busy thread, measured).
        """
        stamp = now_iso()
        acknowledged = list(acknowledged)
        failed = list(failed)
        with self.transaction() as db:
            acknowledged, refused = self._owned_elsewhere(destination, kind, acknowledged)
            failed += refused
            if acknowledged:
                self._resolve_notes(db, destination, kind, acknowledged)
            if acknowledged:
                stored = self.load(destination, kind, [a.key for a in acknowledged if not a.replace])
                rows = []
                for ack in acknowledged:
                    if ack.replace:
                        merged = ack.fields
                    else:
                        merged = dict(stored[ack.key].fields if ack.key in stored else {})
                        merged.update(ack.fields)
                    if None in merged.values():  # a cleared field is not held any more
                        merged = {k: v for k, v in merged.items() if v is not None}
                    rows.append((ack.key, ack.fingerprint, merged, ack.dest_id))
                db.execute(
                    "INSERT INTO records (destination, kind, key, fingerprint, fields, dest_id, version, status, "
                    "failed_fingerprint, last_error, attempts, updated_at) "
                    f"SELECT ?, ?, {_elements(4)}, 1, 'ok', NULL, NULL, 0, ? FROM json_each(?) WHERE true "
                    "ON CONFLICT (destination, kind, key) DO UPDATE SET fingerprint = excluded.fingerprint, "
                    "fields = excluded.fields, dest_id = coalesce(excluded.dest_id, records.dest_id), "
                    "version = records.version + 1, status = 'ok', failed_fingerprint = NULL, last_error = NULL, "
                    "attempts = 0, updated_at = excluded.updated_at",
                    # Fields travel as nested JSON objects: SQLite hands each back as its text (byte for
                    # byte orjson's, keys sorted), so there is no serialisation call per record.
                    (destination, kind, stamp, orjson.dumps(rows, option=orjson.OPT_SORT_KEYS)),
                )
            if failed:
                db.execute(
                    "INSERT INTO records (destination, kind, key, fingerprint, fields, status, failed_fingerprint, "
                    f"last_error, reason_class, attempts, updated_at) SELECT ?, ?, {_elements(1)}, NULL, '{{}}', "
                    f"{_elements(4, start=1)}, 1, ? FROM json_each(?) WHERE true "
                    "ON CONFLICT (destination, kind, key) DO UPDATE SET status = excluded.status, "
                    "failed_fingerprint = excluded.failed_fingerprint, last_error = excluded.last_error, "
                    "reason_class = excluded.reason_class, attempts = records.attempts + 1, "
                    "updated_at = excluded.updated_at",
                    (
                        destination,
                        kind,
                        stamp,
                        orjson.dumps(
                            [
                                (f.key, f.status, f.fingerprint, f.reason[:2000], f.reason_class)
                                for f in failed
                            ]
                        ),
                    ),
                )

    def _resolve_notes(
        self, db: sqlite3.Connection, destination: str, kind: str, acknowledged: list[Acknowledged]
    ) -> None:
        """The fields an acknowledgement wrote are known again: they leave the key's note, and a note with
        nothing left is deleted. A field it did not write (a refresh writes none) stays noted: the values a
        lost batch left there are still unknown. A failure resolves nothing."""
        fresh = self._fresh.get((destination, kind), {})
        settled = {a.key for a in acknowledged if a.key in fresh and fresh[a.key] <= set(a.written)}
        notes = self.notes(destination, kind, [a.key for a in acknowledged if a.key not in settled])
        for key in settled:
            del fresh[key]
        done = list(settled)
        kept: list[tuple[str, pending.Note]] = []
        for ack in acknowledged:
            note = notes.get(ack.key)
            if note is not None:
                rest = {name: values for name, values in note.items() if name not in ack.written}
                if rest:
                    kept.append((ack.key, rest))
                else:
                    done.append(ack.key)
        if done:
            db.execute(
                "DELETE FROM pending WHERE destination = ? AND kind = ? "
                "AND key IN (SELECT value FROM json_each(?))",
                (destination, kind, orjson.dumps(done)),
            )
        if kept:
            self._write_notes(db, destination, kind, kept)

    def _write_notes(
        self, db: sqlite3.Connection, destination: str, kind: str, notes: list[tuple[str, pending.Note]]
    ) -> None:
        db.execute(
            "INSERT OR REPLACE INTO pending (destination, kind, key, note) "
            f"SELECT ?, ?, {_elements(2)} FROM json_each(?)",
            (destination, kind, orjson.dumps(notes)),
        )

    def note(self, destination: str, kind: str, writes: Sequence[tuple[str, dict[str, FieldValue]]]) -> None:
        """Before a batch is sent: note, per key, the fields it is about to write (sync/pending.py)."""
        if not writes:
            return
        with self.transaction() as db:
            old = self.notes(destination, kind, [key for key, _ in writes])
            self._write_notes(
                db,
                destination,
                kind,
                [(key, pending.merge(old.get(key), fields)) for key, fields in writes],
            )
        # A key noted here with no note before holds just its change's fields: an acknowledgement that
        # settles them all deletes the note without reading it back (the common case, and the hot path: the
        # Python of a read-merge-write per key competes with the event loop for the GIL).
        fresh = self._fresh.setdefault((destination, kind), {})
        fresh.update((key, fields.keys()) for key, fields in writes if key not in old)
        for key in old:
            fresh.pop(key, None)

    @guarded("record a write")
    def unnote(self, destination: str, kind: str, keys: Sequence[str]) -> None:
        """A batch noted and then not sent: the notes it created are deleted. A key that had a note before
        keeps the merged one, a superset of what the destination may hold (one more write, nothing lost)."""
        fresh = self._fresh.get((destination, kind), {})
        created = [key for key in keys if fresh.pop(key, None) is not None]
        if created:
            with self.transaction() as db:
                db.execute(
                    "DELETE FROM pending WHERE destination = ? AND kind = ? "
                    "AND key IN (SELECT value FROM json_each(?))",
                    (destination, kind, orjson.dumps(created)),
                )

    @guarded("read it")
    def noted_keys(self, destination: str, kind: str) -> list[str]:
        rows = self.db.execute(
            "SELECT key FROM pending WHERE destination = ? AND kind = ?", (destination, kind)
        ).fetchall()
        return [r[0] for r in rows]

    @guarded("read it")
    def notes(self, destination: str, kind: str, keys: Sequence[str]) -> dict[str, pending.Note]:
        if not keys:
            return {}
        rows = self.db.execute(
            "SELECT key, note FROM pending WHERE destination = ? AND kind = ? "
            "AND key IN (SELECT value FROM json_each(?))",
            (destination, kind, orjson.dumps(keys)),
        ).fetchall()
        return {r[0]: orjson.loads(r[1]) for r in rows}

    def _owned_elsewhere(
        self, destination: str, kind: str, acknowledged: list[Acknowledged]
    ) -> tuple[list[Acknowledged], list[Failed]]:
        """The unique index's rule, kept without failing the batch: an acknowledgement naming a vendor id
        that another key owns is stored as a conflict, not as ownership (connectors claim before writing,
        through ``sync.identity.Ownership``, so this only catches a connector that did not)."""
        ids = {a.dest_id: a.key for a in acknowledged if a.dest_id is not None}
        if not ids:
            return acknowledged, []
        owners = owners_of(self.db, destination, kind, ids)
        keep: list[Acknowledged] = []
        refused: list[Failed] = []
        seen: dict[str, str] = {}
        for ack in acknowledged:
            owner = owners.get(ack.dest_id) if ack.dest_id is not None else None
            if ack.dest_id is not None and owner is None:
                owner = seen.setdefault(ack.dest_id, ack.key)
            if owner is None or owner == ack.key:
                keep.append(ack)
            else:
                refused.append(
                    Failed(
                        ack.key,
                        ack.fingerprint,
                        STATUS_REJECTED,
                        f"conflict: {destination} record {ack.dest_id} belongs to key {owner!r}",
                        "conflict",
                    )
                )
        return keep, refused

    def close(self) -> None:
        self.db.close()


def _elements(count: int, start: int = 0) -> str:
    """The columns of a row passed inside a JSON array parameter (``json_each``), as SQL expressions.
    (``json_extract``, not ``->>``: that operator needs SQLite 3.38.)"""
    return ", ".join(f"json_extract(value, '$[{i}]')" for i in range(start, start + count))
