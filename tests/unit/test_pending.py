"""Write-ahead notes (sync/pending.py): noted before a batch is sent, deleted by its acknowledgement, kept by
a failure, and folded into the next plan so that nothing a lost batch wrote outlives the source."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from accoil_sync.connectors import Change, Outcome
from accoil_sync.connectors.jsonl import delivery_id
from accoil_sync.connectors.segment_messages import message_id
from accoil_sync.errors import DestinationUnavailable
from accoil_sync.sync import pending
from accoil_sync.sync.engine import Engine
from accoil_sync.sync.state import Acknowledged, StateStore
from accoil_sync.sync.synclog import SyncLog
from accoil_sync.traits import HubSpotEncoder, IntercomEncoder, ObjectKind
from tests.conftest import WriteConfig, write
from tests.unit.test_sync import HEADER, FakeConnector, SimulatedKill, run

SEGMENTS = "Accoil_Default_Segments"
SCORE = "Accoil_Default_Score"


def test_a_note_keeps_what_the_fields_may_hold_bounded() -> None:
    note = pending.merge(None, {"score": 5, "tags": ["A"]})
    note = pending.merge(note, {"score": 7, "tags": ["A"], "company": "a3"})
    assert note == {"score": [5, 7], "tags": [["A"]], "company": ["a3"]}
    # A key noted run after run (it fails every time) keeps a union of tags and two distinct values.
    note = pending.merge(note, {"score": 9, "tags": ["B"]})
    note = pending.merge(note, {"score": 7})
    assert note == {"score": [9, 7], "tags": [["A", "B"]], "company": ["a3"]}


def test_replan_writes_noted_fields_again_and_lists_what_may_be_there() -> None:
    encoder = IntercomEncoder("Accoil: ")
    note = {"score": [70], "tags": [["Accoil: Champions"]], "company": ["a3", "a1"], "gone": [4]}
    desired = {"score": 10, "tags": ["Accoil: Engaged"], "company": "a1"}
    delivered = {"score": 10, "tags": ["Accoil: Engaged"], "company": "a1", "gone": 3}
    fields: dict[str, object] = {}  # the diff against state alone: nothing to do
    previous: dict[str, object] = {}
    assert pending.replan(note, fields, previous, desired, delivered, encoder)  # other values may be there
    # Every noted field written again; one the source no longer has is cleared.
    assert fields == {"score": 10, "tags": ["Accoil: Engaged"], "company": "a1", "gone": None}
    # The wanted tag is added again (a noted write may have removed it), the noted one removed; the
    # company the lost batch may have attached is the one to leave.
    assert previous["tags"] == ["Accoil: Champions"]
    assert previous["company"] == "a3"
    assert previous["score"] == 70 and previous["gone"] == 4


def test_replan_of_an_object_with_an_invalid_row_clears_nothing_and_keeps_delivered_tags() -> None:
    fields: dict[str, object] = {}
    previous: dict[str, object] = {}
    note = {"score": [70], "x": [1], "tags": [["A", "C"]]}
    delivered = {"score": 10, "tags": ["A", "B"]}
    pending.replan(
        note, fields, previous, {"score": 10, "tags": ["A"]}, delivered, HubSpotEncoder(), held=True
    )
    # Nothing cleared; the invalid row's B stays (a held list only grows); the lost batch's C goes.
    assert fields == {"score": 10, "tags": ["A", "B"]}
    assert previous["tags"] == ["C"]


def test_an_acknowledgement_resolves_only_the_fields_it_wrote(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state.db")
    state.note("hubspot", "user", [("u1", {"a": 1, "b": 2}), ("u2", {"a": 1})])
    state.commit_batch(
        "hubspot",
        "user",
        [Acknowledged("u1", "fp", {"a": 1}, None, written=["a"]), Acknowledged("u2", "fp", {}, None)],
        [],
    )
    # u1's b was not written by this acknowledgement; u2's refresh wrote nothing.
    assert state.notes("hubspot", "user", ["u1", "u2"]) == {"u1": {"b": [2]}, "u2": {"a": [1]}}
    state.commit_batch("hubspot", "user", [Acknowledged("u1", "fp", {"b": 2}, None, written=["b"])], [])
    assert state.noted_keys("hubspot", "user") == ["u2"]
    state.close()


def test_the_engine_notes_a_batch_before_sending_it_and_an_acknowledgement_deletes_the_note(
    tmp_path: Path,
) -> None:
    class Watching(FakeConnector):
        def __init__(self) -> None:
            super().__init__(max_batch=2)
            self.seen: dict[str, object] = {}

        async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
            with sqlite3.connect(tmp_path / "state.db") as db:
                for key, note in db.execute("SELECT key, note FROM pending"):
                    self.seen.setdefault(key, note)
            return await super().deliver(kind, batch)

    connector = Watching()
    connector.reject, connector.flaky = {"u1"}, {"u2"}
    state = StateStore(tmp_path / "state.db")
    changes = [
        Change("jsonl", ObjectKind.USER, f"u{i}", "upsert", {SCORE: i}, {}, None, f"fp{i}") for i in range(5)
    ]
    asyncio.run(Engine(connector, state, SyncLog(tmp_path / "log", "r1"), "r1").run(changes))
    # Each key's note was there when its batch went out (written before, not after, the request).
    assert set(connector.seen) == {f"u{i}" for i in range(5)}
    assert connector.seen["u3"] == '{"Accoil_Default_Score":[3]}'
    # Acknowledged keys lost theirs; a rejection and a retryable failure keep theirs.
    assert sorted(state.noted_keys("jsonl", "user")) == ["u1", "u2"]
    state.close()


def test_a_batch_noted_but_not_sent_leaves_no_note(tmp_path: Path) -> None:
    """A halt between a batch's note and its turn to send: nothing of it reached the destination, so its
    notes go and the next run plans those keys by their values (no extra write). A key that had a note
    from an earlier lost write keeps it."""
    halt = asyncio.Event()

    class Halting(FakeConnector):
        saw_next_note = False

        async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
            # Ctrl-C while the first batch is out, once the next one is noted and waiting for the slot.
            for _ in range(200):
                with sqlite3.connect(tmp_path / "state.db") as db:
                    if db.execute("SELECT 1 FROM pending WHERE key = 'u2'").fetchone():
                        self.saw_next_note = True
                        break
                await asyncio.sleep(0.01)
            halt.set()
            return await super().deliver(kind, batch)

    connector = Halting(max_batch=2)
    state = StateStore(tmp_path / "state.db")
    state.note("jsonl", "user", [("u3", {SCORE: 99})])  # an earlier run's lost write
    changes = [
        Change("jsonl", ObjectKind.USER, f"u{i}", "upsert", {SCORE: i}, {}, None, f"fp{i}") for i in range(6)
    ]
    engine = Engine(connector, state, SyncLog(tmp_path / "log", "r1"), "r1", halt=halt)
    report = asyncio.run(engine.run(changes))
    assert report.halted
    assert connector.saw_next_note  # the second batch was noted, then halted before its send
    sent = {c.key for c in connector.sent}
    assert sent == {"u0", "u1"}
    assert state.noted_keys("jsonl", "user") == ["u3"]  # the unsent batch's own notes are gone
    assert state.notes("jsonl", "user", ["u3"])["u3"] == {SCORE: [99, 3]}
    state.close()


def test_a_destination_stopped_before_sending_a_batch_leaves_no_note_of_it(tmp_path: Path) -> None:
    """HubSpot's daily limit nearly used: the connector stops before any request of the batch, saying so
    (``before_sending``); the batch's notes go. A stop that may follow a request (a 401 on it) keeps them."""

    class Stopping(FakeConnector):
        async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
            if self.batches:
                exc = DestinationUnavailable("daily limit nearly used")
                exc.before_sending = batch[0].key == "u2"
                raise exc
            return await super().deliver(kind, batch)

    for stop_at, left in (("u2", []), ("u3", ["u3"])):
        connector = Stopping(max_batch=2)
        state = StateStore(tmp_path / f"{stop_at}.db")
        first = "u0" if stop_at == "u2" else "u1"
        changes = [
            Change("jsonl", ObjectKind.USER, f"u{i}", "upsert", {SCORE: i}, {}, None, f"fp{i}")
            for i in range(int(first[1:]), 4)
        ]
        report = asyncio.run(Engine(connector, state, SyncLog(tmp_path / "log", "r1"), "r1").run(changes))
        assert report.stopped
        assert sorted(state.noted_keys("jsonl", "user")) == left
        state.close()


def test_a_batch_lost_before_its_commit_is_undone_when_the_source_returns(
    tmp_path: Path, make_settings: WriteConfig
) -> None:
    users = write(tmp_path / "users.csv", HEADER + "u1,10,A,50\nu2,20,A,60\n")
    settings = make_settings()
    run(settings, FakeConnector())
    write(users, HEADER + "u1,11,B,50\nu2,21,B,60\n")
    killed = FakeConnector(max_batch=2)
    killed.crash_after_batches = 0  # the destination takes the batch; the process dies before the commit
    with pytest.raises(SimulatedKill):
        run(settings, killed, allow_mass_change=True)
    write(users, HEADER + "u1,10,A,50\nu2,20,A,60\n")  # back to the acknowledged values
    resume = FakeConnector()
    run(settings, resume)  # no guard holds it: no value of the source changed
    sent = {c.key: c for c in resume.sent}
    assert set(sent) == {"u1", "u2"}
    assert sent["u1"].fields == {SCORE: 10, SEGMENTS: ["A"]}
    assert sent["u1"].previous[SEGMENTS] == ["B"]  # what the lost batch may have left, to remove
    # The lost batch held other values: ids derived from (version, values) must not repeat its own.
    assert sent["u1"].salt and sent["u1"].version == killed.batches[0][0].version
    again = FakeConnector()
    run(settings, again)
    assert again.sent == []


def test_a_held_refresh_keeps_the_note_of_a_field_it_could_not_write(
    tmp_path: Path, make_settings: WriteConfig
) -> None:
    """A lost batch wrote a score; the next run holds the object (one of its rows is invalid, the other has
    no score) and cannot write it back, so the note of that field must outlive the run, and the score be
    written once the source is whole again."""
    users = write(tmp_path / "users.csv", HEADER + "u1,10,A,50\n")
    settings = make_settings()
    run(settings, FakeConnector())
    write(users, HEADER + "u1,11,A,50\n")
    killed = FakeConnector()
    killed.crash_after_batches = 0
    with pytest.raises(SimulatedKill):
        run(settings, killed, allow_mass_change=True)
    write(users, HEADER + "u1,,A,50\nu1,notanumber,A,50\n")
    held = run(settings, FakeConnector())
    counts = held.plans["jsonl"].counts[ObjectKind.USER]
    assert (counts.held, counts.writes) == (1, 0)
    write(users, HEADER + "u1,10,A,50\n")
    resume = FakeConnector()
    run(settings, resume)
    assert [(c.key, c.fields) for c in resume.sent] == [("u1", {SCORE: 10})]


def test_a_salt_changes_idempotency_ids_and_no_salt_keeps_them() -> None:
    """Segment's messageId and the jsonl delivery id: unchanged for a change without a note (an upgrade
    re-sends nothing, a plain re-send after a kill is still de-duplicated), different with one."""
    change = Change("segment", ObjectKind.USER, "u1", "upsert", {SCORE: 1}, {}, None, "fp", version=3)
    plain_message, plain_delivery = message_id(change), delivery_id(change)
    assert plain_message == message_id(Change(**{**_fields(change)}))  # deterministic
    change.salt = pending.salt({SCORE: [2, 1]})
    assert message_id(change) != plain_message and delivery_id(change) != plain_delivery


def _fields(change: Change) -> dict[str, object]:
    return {name: getattr(change, name) for name in Change.__dataclass_fields__}
