"""The planner: desired values (the stage) against acknowledged values (the state) -> field-level changes.

The unchanged case must be cheap, so the comparison is two steps. First, in DuckDB, the per-object
fingerprint of the source values (salted with the destination's encoder signature) is joined against the
fingerprint stored at the last acknowledgement; equal means nothing to do, and no Python object is built.
Second, only for objects whose fingerprint differs, records are built, encoded and diffed field by field.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from accoil_sync.connectors.base import Change
from accoil_sync.sources.records import RecordDecoder, document_sql
from accoil_sync.sources.stage import Stage
from accoil_sync.sync import pending
from accoil_sync.sync.guards import HELD_PREFIX, Preview
from accoil_sync.sync.heal import RecheckPolicy
from accoil_sync.sync.progress import PlanProgress
from accoil_sync.sync.state import CLEARED, STATUS_REJECTED, StateStore
from accoil_sync.traits.encoders import Encoder, FieldValue, diff_fields
from accoil_sync.traits.names import ObjectKind

RECORD_CHUNK = 2_000


@dataclass(slots=True)
class PlanCounts:
    objects: int = 0  # objects in the source
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    refresh: int = 0  # source changed in a way this destination does not encode: state only, no write
    clear: int = 0
    still_rejected: int = 0  # rejected before with these same values: not re-sent until they change
    retrying: int = 0  # failed retryably before, planned again
    held: int = 0  # had an invalid row: only values present now are sent, nothing of theirs is cleared
    rechecking: int = 0  # rejected before with these same values, planned again (sync/heal.py)

    @property
    def writes(self) -> int:
        return self.new + self.changed + self.clear


@dataclass(slots=True)
class DestinationPlan:
    destination: str
    counts: dict[ObjectKind, PlanCounts] = field(
        default_factory=lambda: {k: PlanCounts() for k in ObjectKind}
    )

    @property
    def writes(self) -> int:
        return sum(c.writes for c in self.counts.values())

    @property
    def still_rejected(self) -> int:
        return sum(c.still_rejected for c in self.counts.values())


class Planner:
    def __init__(
        self,
        stage: Stage,
        state: StateStore,
        *,
        full_refresh: bool = False,
        removable: Mapping[ObjectKind, bool] | None = None,
        recheck: Callable[[str], RecheckPolicy] | None = None,
        progress: Callable[[str], PlanProgress | None] | None = None,
    ) -> None:
        """``removable``: per kind, whether objects absent from the source may be cleared at all (the
        guards' removal verdict); a kind not named may not. ``recheck``: each destination's policy for
        planning healable rejections again (sync/heal.py); None: a rejection waits for its values to change."""
        self.stage = stage
        self.state = state
        self.full_refresh = full_refresh
        self.recheck = recheck
        self.progress = progress  # destination -> its progress, when shown
        self.removable = dict(removable) if removable is not None else dict.fromkeys(ObjectKind, True)
        self._state_tables: set[str] = set()
        self._noted: dict[str, frozenset[str]] = {}  # state table -> keys with a write-ahead note

    def _conditions(self, kind: ObjectKind, encoder: Encoder, removal: str, salt: str | None = None) -> _Sql:
        """SQL over ``desired_<kind> d FULL OUTER JOIN <state> s LEFT JOIN held_<kind> h``."""
        salt = (salt if salt is not None else encoder.signature).replace("'", "''")
        # The encoder signature salts the fingerprint: a new encoding re-plans every object once.
        # An encoder that stores an events source's explanations (the card's) compares them too (``fx``).
        fp = "xor(d.fp, d.fx)" if getattr(encoder, "explanations", False) else "d.fp"
        want = f"hex(xor({fp}, md5_number('{salt}')))"  # hex: CAST(UHUGEINT AS VARCHAR) is slow in DuckDB 2
        rejected = f"s.status = '{STATUS_REJECTED}' AND s.failed = {want}"
        changed = (
            f"d.key IS NOT NULL AND s.fingerprint IS DISTINCT FROM {want} AND NOT coalesce({rejected}, false)"
        )
        # Gone from the source: cleared if delivered -- or if only noted (its one write was lost before state
        # recorded it: what that write left is all there is), unless clearing it was refused already (that
        # waits for a re-check).
        refused = f"s.status = '{STATUS_REJECTED}' AND s.failed = '{CLEARED}'"
        gone = (
            f"d.key IS NULL AND h.key IS NULL AND ((s.fingerprint IS NOT NULL AND s.fingerprint <> '{CLEARED}') "
            f"OR (s.noted AND NOT coalesce({refused}, false)))"
            if removal == "clear" and self.removable.get(kind, False)
            else "false"
        )
        return _Sql(want, rejected, changed, gone)

    def preview(
        self,
        destination: str,
        encoder: Encoder,
        removal: str,
        kinds: frozenset[ObjectKind],
        previous_signature: str | None = None,
        sample: int = 5,
    ) -> dict[ObjectKind, Preview]:
        """Counts for the guards' thresholds, in SQL, before anything is planned: objects the destination
        holds, those that would be removed, those whose source values changed. ``previous_signature`` is
        the encoder signature of the last run: a new encoding alone is not a change of values."""
        out: dict[ObjectKind, Preview] = {}
        con = self.stage.con
        for kind in kinds:
            st = self._load_state(destination, kind)
            sql = self._conditions(kind, encoder, removal, previous_signature)
            held = f"coalesce(s.fingerprint, '') LIKE '{HELD_PREFIX}%'"
            values = f"(d.key IS NOT NULL AND s.fingerprint IS NOT NULL AND NOT {held} AND h.key IS NULL AND {sql.changed})"
            known = f"(s.fingerprint IS NOT NULL AND s.fingerprint <> '{CLEARED}')"
            source = (
                f"FROM desired_{kind.value} d FULL OUTER JOIN {st} s ON d.key = s.key "
                f"LEFT JOIN held_{kind.value} h ON h.key = coalesce(d.key, s.key)"
            )
            absent = f"(d.key IS NULL AND h.key IS NULL AND {known})"
            row = con.execute(
                f"SELECT count(*) FILTER (WHERE {known}), count(*) FILTER (WHERE {sql.gone}), "
                f"count(*) FILTER (WHERE {values}), count(*) FILTER (WHERE {absent}) {source}"
            ).fetchall()[0]
            p = Preview(int(row[0]), int(row[1]), int(row[2]), int(row[3]))
            if p.removed:
                p.removed_sample = _keys(
                    con, f"SELECT s.key {source} WHERE {sql.gone} ORDER BY 1 LIMIT {sample}"
                )
            if p.changed:
                p.changed_sample = _keys(
                    con, f"SELECT d.key {source} WHERE {values} ORDER BY 1 LIMIT {sample}"
                )
            out[kind] = p
        return out

    def plan(
        self,
        destination: str,
        encoder: Encoder,
        removal: str,
        kinds: frozenset[ObjectKind],
        report: DestinationPlan,
    ) -> Generator[Change, None, None]:
        """Changes in a deterministic order: accounts before users (users may attach to accounts), then key."""
        for kind in (ObjectKind.ACCOUNT, ObjectKind.USER):
            if kind in kinds:
                yield from self._plan_kind(destination, kind, encoder, removal, report.counts[kind])

    def _load_state(self, destination: str, kind: ObjectKind) -> str:
        table = f"st_{destination}_{kind.value}"
        if table in self._state_tables:  # loaded by preview() for this destination already
            return table
        self._state_tables.add(table)
        con = self.stage.con
        con.execute(
            f"CREATE OR REPLACE TABLE {table} (key VARCHAR, fingerprint VARCHAR, status VARCHAR, "
            "failed VARCHAR, noted BOOLEAN DEFAULT false)"
        ).fetchall()
        for part, rows in self.state.fingerprints(destination, kind.value):
            cols = list(zip(*rows, strict=True))
            names = ("key", "fingerprint", "status", "failed")[: len(cols)]
            chunk = pa.table({n: pa.array(c, pa.string()) for n, c in zip(names, cols, strict=True)})
            select = "key, fingerprint, 'ok', NULL" if part == "ok" else "*"
            con.register("st_chunk", chunk)
            con.execute(
                f"INSERT INTO {table} (key, fingerprint, status, failed) SELECT {select} FROM st_chunk"
            ).fetchall()
            con.unregister("st_chunk")
        # Keys a batch was sent for but never acknowledged (sync/pending.py): usually none.
        noted = self.state.noted_keys(destination, kind.value)
        self._noted[table] = frozenset(noted)
        if noted:
            con.register("st_noted", pa.table({"key": pa.array(noted, pa.string())}))
            con.execute(f"UPDATE {table} SET noted = true WHERE key IN (SELECT key FROM st_noted)").fetchall()
            # A key whose first write was lost has a note and no record: it is known only by its note.
            con.execute(
                f"INSERT INTO {table} (key, noted) SELECT key, true FROM st_noted ANTI JOIN {table} USING (key)"
            ).fetchall()
            con.unregister("st_noted")
        return table

    def _recheck(self, destination: str, kind: ObjectKind, table: str) -> None:
        """Rejections due for a re-check (sync/heal.py) become changes like any other: forgetting which
        values they were for. Done when planning, not when loading, so no guard counts them as changed."""
        policy = None if self.recheck is None or self.full_refresh else self.recheck(destination)
        if policy is not None and (due := policy.due(self.state, destination, kind.value)):
            con = self.stage.con
            con.register("st_due", pa.table({"key": pa.array(due, pa.string())}))
            con.execute(f"UPDATE {table} SET failed = NULL WHERE key IN (SELECT key FROM st_due)").fetchall()
            con.unregister("st_due")

    def _plan_kind(
        self, destination: str, kind: ObjectKind, encoder: Encoder, removal: str, counts: PlanCounts
    ) -> Iterator[Change]:
        st = self._load_state(destination, kind)
        self._recheck(destination, kind, st)
        con = self.stage.con
        sql = self._conditions(kind, encoder, removal)
        want, rejected, changed, gone = sql.want, sql.rejected, sql.changed, sql.gone
        counts.objects = int(con.execute(f"SELECT count(*) FROM desired_{kind.value}").fetchall()[0][0])
        if self.full_refresh:
            changed = "d.key IS NOT NULL"
            rejected = "false"
        # A key with a leftover note is planned whatever its values: the destination may hold others.
        changed = f"({changed}) OR (d.key IS NOT NULL AND s.noted AND NOT coalesce({rejected}, false))"
        still, rechecking = con.execute(
            f"SELECT count(*) FILTER (WHERE {rejected}), "
            f"count(*) FILTER (WHERE s.status = '{STATUS_REJECTED}' AND s.failed IS NULL) "
            f"FROM desired_{kind.value} d JOIN {st} s USING (key)"
        ).fetchall()[0]
        counts.still_rejected, counts.rechecking = int(still), int(rechecking)
        progress = self.progress(destination) if self.progress is not None else None
        if progress is not None:  # the total for the bars: one more join, only when they are shown
            progress.candidates(
                int(
                    con.execute(
                        f"SELECT count(*) FROM desired_{kind.value} d FULL OUTER JOIN {st} s ON d.key = s.key "
                        f"LEFT JOIN held_{kind.value} h ON h.key = coalesce(d.key, s.key) "
                        f"WHERE ({changed}) OR ({gone})"
                    ).fetchall()[0][0]
                )
            )
        # One streaming pass: candidates joined with their staged rows, one JSON document per row (built only
        # for the objects planned), in key order. Fetching records per chunk of keys instead would rescan
        # the staged table once per chunk: quadratic at a million rows.
        document = document_sql(kind, "f", self.stage.columns(kind))
        cur = con.cursor()
        cur.execute(
            f"WITH c AS (SELECT coalesce(d.key, s.key) AS c_key, {want} AS c_want, d.key IS NULL AS c_gone, "
            f"s.key IS NULL AS c_new, s.status AS c_status, h.key IS NOT NULL AS c_held "
            f"FROM desired_{kind.value} d FULL OUTER JOIN {st} s ON d.key = s.key "
            f"LEFT JOIN held_{kind.value} h ON h.key = coalesce(d.key, s.key) "
            f"WHERE ({changed}) OR ({gone})) "
            f"SELECT c_key, c_want, c_gone, c_new, c_status, {document}, c_held "
            f"FROM c LEFT JOIN final_{kind.value} f ON f.key = c.c_key ORDER BY c_key, f._seq"
        )
        planned = 0
        decode, encode = RecordDecoder(kind).record, encoder.encode  # bound once: this loop is hot
        full_refresh = self.full_refresh
        single = len(self.stage.profiles) == 1
        noted = self._noted.get(st, frozenset())
        for part in _objects(cur, RECORD_CHUNK, single):
            if progress is not None:
                progress.planned(len(part))
            # An object the state has never seen (c_new) has nothing to load: a first sync skips the reads.
            stored = self.state.load(destination, kind.value, [row[0] for row, _ in part if not row[3]])
            notes = (
                self.state.notes(destination, kind.value, [row[0] for row, _ in part if row[0] in noted])
                if noted
                else {}
            )
            for (key, fingerprint, is_gone, is_new, status, _, held), docs in part:
                before = stored.get(key)
                note = notes.get(key)
                dest_id, version = (before.dest_id, before.version) if before else (None, 0)
                planned += 1
                if is_gone:
                    delivered = {} if before is None else before.fields
                    fields = {name: encoder.cleared(name) for name in sorted(delivered)}
                    previous = dict(delivered)
                    other = note is not None and pending.replan(
                        note, fields, previous, {}, delivered, encoder
                    )
                    counts.clear += 1
                    yield Change(
                        destination,
                        kind,
                        key,
                        "clear",
                        fields,
                        previous,
                        None,
                        CLEARED,
                        dest_id,
                        version,
                        salt=pending.salt(note) if note is not None and other else "",
                    )
                    continue
                record = decode(key, docs)
                encoded = encode(record)
                first = before is None or before.fingerprint is None
                delivered = {} if before is None else before.fields
                if held:
                    # An invalid row is no evidence that a value is gone: send only what is present now.
                    counts.held += 1
                    fingerprint = HELD_PREFIX + fingerprint
                    fields = _without_removals(encoded, delivered, encoder)
                elif full_refresh:
                    # "Make the vendor equal the source": every present field, and every emptied one cleared.
                    fields = {**encoded, **_emptied(encoded, delivered, encoder)}
                else:
                    # Nothing delivered yet: every encoded field is a change (the common case of a first sync).
                    fields = diff_fields(encoded, delivered, encoder) if delivered else encoded
                previous = {k: delivered[k] for k in fields if k in delivered} if delivered else {}
                salt = ""
                if note is not None:
                    fields = dict(fields)
                    if pending.replan(note, fields, previous, encoded, delivered, encoder, held=held):
                        salt = pending.salt(note)
                if status == "retryable":
                    counts.retrying += 1
                if not fields:
                    counts.refresh += 1
                    yield Change(
                        destination, kind, key, "refresh", {}, {}, record, fingerprint, dest_id, version
                    )
                    continue
                if is_new or first:
                    counts.new += 1
                else:
                    counts.changed += 1
                yield Change(
                    destination,
                    kind,
                    key,
                    "upsert",
                    fields,
                    previous,
                    record,
                    fingerprint,
                    dest_id,
                    version,
                    first,
                    salt,
                )
        cur.close()
        counts.unchanged = counts.objects - (planned - counts.clear) - counts.still_rejected
        con.execute(f"DROP TABLE {st}").fetchall()
        self._state_tables.discard(st)
        self._noted.pop(st, None)


Candidate = tuple[tuple[Any, ...], list[str]]


@dataclass(frozen=True, slots=True)
class _Sql:
    want: str
    rejected: str
    changed: str
    gone: str


def _keys(con: Any, sql: str) -> list[str]:
    return [str(r[0]) for r in con.execute(sql).fetchall()]


def _emptied(
    encoded: Mapping[str, FieldValue], delivered: Mapping[str, FieldValue], encoder: Encoder
) -> dict[str, FieldValue]:
    """Fields delivered before, absent now and not already cleared: their cleared values."""
    return {
        k: encoder.cleared(k) for k, v in delivered.items() if k not in encoded and v != encoder.cleared(k)
    }


def _without_removals(
    encoded: Mapping[str, FieldValue], delivered: Mapping[str, FieldValue], encoder: Encoder
) -> dict[str, FieldValue]:
    """The diff of an object with an invalid row: present values that changed, nothing cleared, and a list
    (tags) only grown, never shrunk -- the invalid row's profile keeps what it had."""
    if not delivered:
        return dict(encoded)
    fields = diff_fields(encoded, delivered, encoder)
    out: dict[str, FieldValue] = {}
    for name, value in fields.items():
        if name not in encoded:
            continue
        old = delivered.get(name)
        if isinstance(value, list) and isinstance(old, list):
            value = sorted(set(value) | set(old))
            if value == sorted(old):
                continue
        out[name] = value
    return out


def _objects(cur: Any, size: int, single: bool) -> Iterator[list[Candidate]]:
    """Chunks of up to ``size`` objects from a cursor ordered by key: (first row, [document per row]).
    An object with several profiles has several consecutive rows, possibly across two fetches. With a
    single profile (``single``) the stage holds one row per key, so there is nothing to merge."""
    if single:
        while rows := cur.fetchmany(size):
            yield [(row, [row[5]]) for row in rows]
        return
    chunk: list[Candidate] = []
    current: Candidate | None = None
    while rows := cur.fetchmany(size):
        for row in rows:
            if current is not None:
                if row[0] == current[0][0]:
                    current[1].append(row[5])
                    continue
                chunk.append(current)
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
            current = (row, [row[5]])
    if current is not None:
        chunk.append(current)
    if chunk:
        yield chunk
