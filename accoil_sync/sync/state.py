"""The state store: what each destination last acknowledged, per object, and the run ledger.

SQLite in WAL mode. Every write happens inside one transaction per delivered batch, so a kill -9 at any
moment leaves either the batch's outcomes or none of them -- never half. The schema is versioned with
``PRAGMA user_version`` and migrated forward in order.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson

from accoil_sync.errors import StateStoreError
from accoil_sync.sync import pending
from accoil_sync.traits.encoders import FieldValue

MIGRATIONS: list[str] = [
    # 1: records per (destination, kind, key) and the run ledger
    """
    CREATE TABLE records (
        destination TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT,              -- of the source values last acknowledged (NULL: never delivered)
        fields TEXT NOT NULL DEFAULT '{}',   -- JSON: encoded field -> value last acknowledged
        dest_id TEXT,                  -- the destination's own id (Intercom contact id, HubSpot object id)
        version INTEGER NOT NULL DEFAULT 0,  -- acknowledged deliveries so far
        status TEXT NOT NULL DEFAULT 'ok',   -- ok | retryable | rejected
        failed_fingerprint TEXT,       -- the source values a rejection was for
        last_error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (destination, kind, key)
    ) WITHOUT ROWID;
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        command TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        status TEXT NOT NULL,          -- running | ok | partial | failed | interrupted
        exit_code INTEGER,
        invalid_rows INTEGER NOT NULL DEFAULT 0,
        message TEXT
    );
    CREATE TABLE run_counts (
        run_id TEXT NOT NULL,
        destination TEXT NOT NULL,
        outcome TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (run_id, destination, outcome)
    );
    CREATE TABLE run_failures (
        run_id TEXT NOT NULL,
        destination TEXT NOT NULL,
        reason TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (run_id, destination, reason)
    );
    """,
    # 2: what the HubSpot card shows (latest metrics per object, and their history), the scheduler's lease
    # and small key/value facts that must survive restarts (alert state)
    """
    CREATE TABLE card_objects (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        email TEXT,                    -- lower-cased, for lookups by the card's email query parameter
        domain TEXT,                   -- lower-cased
        record TEXT NOT NULL,          -- JSON: name, computed_at and metrics per score profile
        version INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID;
    CREATE INDEX card_objects_email ON card_objects (email) WHERE email IS NOT NULL;
    CREATE INDEX card_objects_domain ON card_objects (domain) WHERE domain IS NOT NULL;
    CREATE TABLE card_history (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        version INTEGER NOT NULL,      -- the delivery version: a repeated batch rewrites, never duplicates
        run_id TEXT NOT NULL,
        at TEXT NOT NULL,
        record TEXT,                   -- NULL: the object left the source and was cleared
        PRIMARY KEY (kind, key, version)
    ) WITHOUT ROWID;
    CREATE INDEX records_dest_id ON records (destination, kind, dest_id) WHERE dest_id IS NOT NULL;
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at REAL NOT NULL       -- Unix seconds: an expired lease may be taken over
    );
    CREATE TABLE facts (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 3: ownership (docs/IDENTITY.md): a vendor record belongs to at most one key per destination and kind.
    # Stores written before this rule may hold one id under two keys; neither can be trusted, so both are
    # forgotten and resolved again. The failure's stable class sits beside its text.
    """
    ALTER TABLE records ADD COLUMN reason_class TEXT;
    DROP INDEX records_dest_id;
    UPDATE records SET dest_id = NULL WHERE dest_id IS NOT NULL AND (destination, kind, dest_id) IN (
        SELECT destination, kind, dest_id FROM records WHERE dest_id IS NOT NULL
        GROUP BY destination, kind, dest_id HAVING count(*) > 1);
    CREATE UNIQUE INDEX records_dest_id ON records (destination, kind, dest_id) WHERE dest_id IS NOT NULL;
    """,
    # 4: write-ahead notes (sync/pending.py): what a batch sent but not yet acknowledged may have written
    """
    CREATE TABLE pending (
        destination TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        note TEXT NOT NULL,            -- JSON: field -> every value a write of ours may have left there
        PRIMARY KEY (destination, kind, key)
    ) WITHOUT ROWID;
    """,
]

STATUS_OK = "ok"
STATUS_RETRYABLE = "retryable"
STATUS_REJECTED = "rejected"
CLEARED = "cleared"  # fingerprint of an object whose traits were cleared by the removal policy


def reason_class_of(status: str, reason_class: str | None = None) -> str:
    """A failure's class, for rows written before classes existed: a retryable failure is a vendor error,
    a rejection the vendor refusing the values."""
    return reason_class or ("vendor_error" if status == STATUS_RETRYABLE else "invalid")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


@dataclass(frozen=True, slots=True)
class Failed:
    key: str
    fingerprint: str
    status: str  # retryable | rejected
    reason: str
    reason_class: str | None = None  # connectors.base.ReasonClass


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


BUSY_SECONDS = 30  # how long a write waits for another process's transaction before giving up


def explain(path: Path, action: str, exc: BaseException) -> StateStoreError:
    """A state store failure as a sentence: the path, what went wrong, and what to do about it."""
    text = str(exc)
    lowered = text.lower()
    if "locked" in lowered:
        advice = (
            f"another process kept it locked for more than {BUSY_SECONDS}s (a sqlite3 shell or a backup "
            "holding a transaction?); close it and run again"
        )
    elif "readonly" in lowered or "read-only" in lowered or isinstance(exc, PermissionError):
        advice = "it is read-only for this user: accoil-sync must write it (fix the permissions or the mount)"
    elif "full" in lowered or getattr(exc, "errno", None) == 28:
        advice = (
            "the disk is full: free space and run again; nothing acknowledged is lost, the batches that "
            "could not be recorded are planned again"
        )
    elif "not a database" in lowered or "malformed" in lowered or "encrypted" in lowered:
        advice = (
            "the file is damaged (truncated or overwritten): restore it from a backup (docs/DEPLOY.md); "
            "moving it aside starts from an empty state, and the next sync then explains that it would "
            "re-send everything"
        )
    elif "unable to open" in lowered or isinstance(exc, OSError):
        advice = (
            "the file or its directory cannot be opened or created: check that state.path is right, that "
            "its directory exists or can be created, and that this user may write there"
        )
    else:
        advice = "see the SQLite error above; back the file up before changing anything"
    return StateStoreError(f"state store {path}: cannot {action}: {text}. {advice}")


P = ParamSpec("P")
R = TypeVar("R")


def _guarded(
    action: str,
) -> Callable[[Callable[Concatenate[StateStore, P], R]], Callable[Concatenate[StateStore, P], R]]:
    """Turn SQLite and file-system errors of a StateStore method into a ``StateStoreError``."""

    def wrap(method: Callable[Concatenate[StateStore, P], R]) -> Callable[Concatenate[StateStore, P], R]:
        def guarded(self: StateStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(self, *args, **kwargs)
            except (sqlite3.Error, OSError) as exc:
                raise explain(self.path, action, exc) from exc

        guarded.__name__, guarded.__doc__ = method.__name__, method.__doc__
        return guarded

    return wrap


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


class StateStore:
    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        """``readonly``: for ``status`` and ``failures``, which must work on a store they may not write."""
        self.path = path
        self._noting: bool | None = None  # whether the pending table may hold notes (see _has_notes)
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

    @_guarded("read it")
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
            if acknowledged and self._has_notes(db):
                # What the destination holds for these keys is known again; a failure keeps its note.
                db.execute(
                    "DELETE FROM pending WHERE destination = ? AND kind = ? "
                    "AND key IN (SELECT value FROM json_each(?))",
                    (destination, kind, orjson.dumps([a.key for a in acknowledged])),
                )
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

    def _has_notes(self, db: sqlite3.Connection) -> bool:
        """Whether an acknowledgement may have a note to delete: checked once per store, then known, as
        every note after that is written through this store (the commit path stays one statement shorter in
        the common case, a run that was never interrupted)."""
        if self._noting is None:
            self._noting = db.execute("SELECT EXISTS (SELECT 1 FROM pending)").fetchone()[0] == 1
        return self._noting

    def note(self, destination: str, kind: str, writes: Sequence[tuple[str, dict[str, FieldValue]]]) -> None:
        """Before a batch is sent: note, per key, the fields it is about to write (sync/pending.py)."""
        if not writes:
            return
        self._noting = True
        with self.transaction() as db:
            old = self.notes(destination, kind, [key for key, _ in writes])
            rows = [(key, pending.merge(old.get(key), fields)) for key, fields in writes]
            db.execute(
                "INSERT OR REPLACE INTO pending (destination, kind, key, note) "
                f"SELECT ?, ?, {_elements(2)} FROM json_each(?)",
                (destination, kind, orjson.dumps(rows)),
            )

    @_guarded("read it")
    def noted_keys(self, destination: str, kind: str) -> list[str]:
        rows = self.db.execute(
            "SELECT key FROM pending WHERE destination = ? AND kind = ?", (destination, kind)
        ).fetchall()
        return [r[0] for r in rows]

    @_guarded("read it")
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

    @_guarded("read it")
    def failure_counts(self) -> list[tuple[str, str, int]]:
        return [
            (r[0], r[1], int(r[2]))
            for r in self.db.execute(
                "SELECT destination, status, count(*) FROM records WHERE status != 'ok' "
                "GROUP BY destination, status ORDER BY destination, status"
            )
        ]

    @_guarded("read it")
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

    @_guarded("read it")
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

    @_guarded("read it")
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

    @_guarded("read it")
    def is_new(self) -> bool:
        """No run was ever started on this store and it holds no record (sync/continuity.py)."""
        row = self.db.execute("SELECT NOT EXISTS (SELECT 1 FROM runs) AND NOT EXISTS (SELECT 1 FROM records)")
        return bool(row.fetchone()[0])

    @_guarded("read it")
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

    @_guarded("read it")
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

    @_guarded("read it")
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

    def close(self) -> None:
        self.db.close()


def _elements(count: int, start: int = 0) -> str:
    """The columns of a row passed inside a JSON array parameter (``json_each``), as SQL expressions.
    (``json_extract``, not ``->>``: that operator needs SQLite 3.38.)"""
    return ", ".join(f"json_extract(value, '$[{i}]')" for i in range(start, start + count))


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + f"-{int(time.time_ns() % 1_000_000):06d}"
