"""Ownership (docs/IDENTITY.md): a vendor record belongs to at most one source key per destination and kind,
across runs -- claims in a run, the state store's unique index, and the migration of older stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from accoil_sync.connectors.base import HEALABLE, Outcome
from accoil_sync.sync.identity import Ownership
from accoil_sync.sync.state import MIGRATIONS, Acknowledged, Failed, StateStore
from accoil_sync.traits.names import ObjectKind

USER, ACCOUNT = ObjectKind.USER, ObjectKind.ACCOUNT


def test_claims_within_a_run_grant_one_key_per_record(tmp_path: Path) -> None:
    own = Ownership("hubspot")
    assert own.claim(USER, "u1", "101") is None
    assert own.claim(USER, "u1", "101") is None  # claiming one's own record again is fine
    assert own.claim(USER, "u2", "101") == "u1"  # a second key is refused, naming the owner
    assert own.claim(ACCOUNT, "u2", "101") is None  # kinds are separate namespaces
    own.release(USER, "u2", "101")  # releasing a claim one does not hold changes nothing
    assert own.owners(USER, ["101", "999"]) == {"101": "u1"}
    own.release(USER, "u1", "101")
    assert own.claim(USER, "u2", "101") is None


def test_ownership_acknowledged_in_an_earlier_run_holds_in_the_next(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path)
    store.commit_batch("hubspot", "user", [Acknowledged("u1", "fp", {"a": 1}, "101")], [])
    store.commit_batch("intercom", "user", [Acknowledged("u9", "fp", {"a": 1}, "101")], [])
    own, other = Ownership("hubspot", path), Ownership("intercom", path)
    try:
        assert own.claim(USER, "u2", "101") == "u1"  # from the state store, not this run
        assert own.claim(USER, "u1", "101") is None
        assert other.claim(USER, "u1", "101") == "u9"  # each destination has its own records
    finally:
        own.close()
        other.close()
        store.close()


def test_the_state_store_never_records_one_vendor_id_under_two_keys(tmp_path: Path) -> None:
    """An acknowledgement that would give an owned id to another key is stored as a conflict (the batch's
    other rows still commit), also inside one batch."""
    store = StateStore(tmp_path / "s.db")
    store.commit_batch("hubspot", "user", [Acknowledged("u1", "fp1", {"a": 1}, "101")], [])
    store.commit_batch(
        "hubspot",
        "user",
        [
            Acknowledged("u2", "fp2", {"a": 2}, "101"),
            Acknowledged("u3", "fp3", {"a": 3}, "103"),
            Acknowledged("u4", "fp4", {"a": 4}, "103"),
        ],
        [Failed("u5", "fp5", "rejected", "not found", "not_found")],
    )
    rows = {
        r[0]: r[1:]
        for r in store.db.execute(
            "SELECT key, dest_id, status, reason_class, fields FROM records ORDER BY key"
        )
    }
    assert rows["u1"] == ("101", "ok", None, '{"a":1}')
    assert rows["u2"][:3] == (None, "rejected", "conflict")
    assert rows["u3"] == ("103", "ok", None, '{"a":3}')
    assert rows["u4"][:3] == (None, "rejected", "conflict")
    assert rows["u5"][:3] == (None, "rejected", "not_found")
    owners = store.db.execute(
        "SELECT dest_id, count(*) FROM records WHERE dest_id IS NOT NULL GROUP BY dest_id HAVING count(*) > 1"
    ).fetchall()
    assert owners == []
    store.close()


def test_a_version_2_store_with_a_shared_id_forgets_it_for_both_keys(tmp_path: Path) -> None:
    """Before ownership, one HubSpot contact could be recorded for two users. Neither can be trusted: the
    migration clears both ids (they are resolved again), and keeps every other id."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for sql in MIGRATIONS[:2]:
        db.executescript(sql)
    db.executemany(
        "INSERT INTO records (destination, kind, key, fingerprint, fields, dest_id, updated_at) "
        "VALUES ('hubspot', 'user', ?, 'fp', '{}', ?, 'now')",
        [("u1", "101"), ("u2", "101"), ("u3", "103")],
    )
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    store = StateStore(path)
    try:
        assert store.schema_version == len(MIGRATIONS)
        ids = dict(store.db.execute("SELECT key, dest_id FROM records").fetchall())
        assert ids == {"u1": None, "u2": None, "u3": "103"}
    finally:
        store.close()


def test_outcome_classes() -> None:
    conflict = Outcome.conflict("u2", "u1", "101", "HubSpot")
    assert (conflict.status, conflict.reason_class) == ("rejected", "conflict")
    assert "'u1'" in (conflict.reason or "") and "101" in (conflict.reason or "")
    assert Outcome.reject("k", "bad").reason_class == "invalid"
    assert Outcome.retry("k", "503").reason_class == "vendor_error"
    assert {"not_found", "conflict", "ambiguous"} == HEALABLE
