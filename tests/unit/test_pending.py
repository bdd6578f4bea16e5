"""Write-ahead notes (sync/pending.py): noted before a batch is sent, deleted by its acknowledgement, kept by
a failure, and folded into the next plan so that nothing a lost batch wrote outlives the source."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from accoil_sync.connectors import Change, Outcome
from accoil_sync.sync import pending
from accoil_sync.sync.engine import Engine
from accoil_sync.sync.state import StateStore
from accoil_sync.sync.synclog import SyncLog
from accoil_sync.traits import HubSpotEncoder, IntercomEncoder, ObjectKind
from tests.conftest import WriteConfig, write
from tests.unit.test_sync import HEADER, FakeConnector, SimulatedKill, run

SEGMENTS = "Accoil_Default_Segments"
SCORE = "Accoil_Default_Score"


def test_a_note_keeps_every_value_written_since_the_last_acknowledgement() -> None:
    note = pending.merge(None, {"score": 5, "tags": ["A"]})
    note = pending.merge(note, {"score": 7, "tags": ["A"], "company": "a3"})
    assert note == {"score": [5, 7], "tags": [["A"]], "company": ["a3"]}


def test_replan_writes_noted_fields_again_and_lists_what_may_be_there() -> None:
    encoder = IntercomEncoder("Accoil: ")
    note = {"score": [70], "tags": [["Accoil: Champions"]], "company": ["a3", "a1"], "gone": [4]}
    desired = {"score": 10, "tags": ["Accoil: Engaged"], "company": "a1"}
    delivered = {"score": 10, "tags": ["Accoil: Engaged"], "company": "a1", "gone": 3}
    fields: dict[str, object] = {}  # the diff against state alone: nothing to do
    previous: dict[str, object] = {}
    pending.replan(note, fields, previous, desired, delivered, encoder)
    # Every noted field written again; one the source no longer has is cleared.
    assert fields == {"score": 10, "tags": ["Accoil: Engaged"], "company": "a1", "gone": None}
    # The wanted tag is added again (a noted write may have removed it), the noted one removed; the
    # company the lost batch may have attached is the one to leave.
    assert previous["tags"] == ["Accoil: Champions"]
    assert previous["company"] == "a3"
    assert previous["score"] == 70 and previous["gone"] == 4


def test_replan_of_an_object_with_an_invalid_row_clears_nothing() -> None:
    fields: dict[str, object] = {}
    previous: dict[str, object] = {}
    pending.replan(
        {"score": [70], "x": [1]}, fields, previous, {"score": 10}, {}, HubSpotEncoder(), clear_absent=False
    )
    assert fields == {"score": 10}


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
    again = FakeConnector()
    run(settings, again)
    assert again.sent == []
