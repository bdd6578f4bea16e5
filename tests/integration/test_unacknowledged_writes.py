"""A batch the destination took but state never recorded (the run was killed between the two, or the state
store failed) must not outlive a source that moves on -- or back to the values state holds. The write-ahead
notes (sync/pending.py) make the next run write those fields again and remove the tags and companies they
may have left. Deterministic: the user commits of one run fail after delivery, then the source returns to
what the run before had delivered."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.emulator import Emulator
from accoil_sync.errors import StateStoreError
from accoil_sync.sync.runner import RunResult, execute
from accoil_sync.sync.state import StateStore, explain
from tests.conftest import WriteConfig, write
from tests.integration import test_hubspot_identity as hubspot
from tests.integration import test_intercom_identity as intercom
from tests.integration.conftest import destination_section


def sync(settings: Settings, destination: str) -> RunResult:
    return asyncio.run(execute(settings, deliver=True, destinations=[destination], allow_mass_change=True))


def lose_commits(monkeypatch: pytest.MonkeyPatch, lost: str = "user") -> None:
    """Every commit of a ``lost`` batch (user or account) fails after the destination answered, as a
    kill -9 there would."""
    real = StateStore.commit_batch

    def failing(self: StateStore, destination: str, kind: str, *args: Any) -> None:
        if kind == lost:
            raise explain(self.path, "record a write", sqlite3.OperationalError("disk I/O error"))
        real(self, destination, kind, *args)

    monkeypatch.setattr(StateStore, "commit_batch", failing)


def notes(settings: Settings) -> int:
    with sqlite3.connect(settings.state.path) as db:
        return int(db.execute("SELECT count(*) FROM pending").fetchone()[0])


def notes_of_acknowledged(settings: Settings) -> int:
    """Notes left on records in good standing: an acknowledgement deletes its note (a failure keeps its
    own, the reported conflicts here: the next write for them cannot know what the failed one left)."""
    with sqlite3.connect(settings.state.path) as db:
        return int(
            db.execute(
                "SELECT count(*) FROM pending p JOIN records r USING (destination, kind, key) "
                "WHERE r.status = 'ok'"
            ).fetchone()[0]
        )


def test_intercom_tags_attributes_and_companies_of_an_unrecorded_batch_are_undone(
    served: str,
    make_settings: WriteConfig,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__INTERCOM__ACCESS_TOKEN", "tok-test")
    manifest = emulator.seed_messy(intercom.users(0), intercom.accounts(0))["intercom"]
    settings: Settings = make_settings(
        "users.csv",
        "accounts.csv",
        destination_section(served, "intercom", create_missing_contacts=True),
    )
    intercom.write_source(tmp_path, 0)
    sync(settings, "intercom")
    intercom.check_every_record(emulator, 0, manifest, create=True)

    # Bump 2: every user changes segment (a tag added, one removed), score and company.
    intercom.write_source(tmp_path, 2)
    with monkeypatch.context() as patched:
        lose_commits(patched)
        with pytest.raises(StateStoreError):
            sync(settings, "intercom")
    assert notes(settings) > 0
    held = {c["external_id"]: c for c in emulator.intercom.contacts.values() if c["external_id"]}
    moved = intercom.users(2)[0]
    assert held["u0"]["custom_attributes"][intercom.SCORE] == moved["score"]  # the batch did land

    # Back to what state holds: a diff against state alone sees nothing to do.
    intercom.write_source(tmp_path, 0)
    result = sync(settings, "intercom")
    assert result.deliveries["intercom"].stopped is None
    intercom.check_every_record(emulator, 0, manifest, create=True)
    assert notes_of_acknowledged(settings) == 0
    again = sync(settings, "intercom")
    assert again.deliveries["intercom"].counts["ok"] == 0  # nothing left to redo


def test_hubspot_values_of_an_unrecorded_batch_are_written_over(
    served: str,
    make_settings: WriteConfig,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN", "pat-test")
    users, accounts = hubspot.USERS, hubspot.ACCOUNTS
    emulator.seed_messy(hubspot.rows(users), hubspot.rows(accounts))
    settings: Settings = make_settings(
        "users.csv", "accounts.csv", destination_section(served, "hubspot", create_missing=True)
    )

    def source(by: int) -> None:
        write(tmp_path / "users.csv", hubspot.bump(users, by))
        write(tmp_path / "accounts.csv", hubspot.bump(accounts, by))

    source(0)
    sync(settings, "hubspot")
    hubspot.check_ownership(emulator, settings, users, accounts)
    source(5)
    with monkeypatch.context() as patched:
        lose_commits(patched)
        with pytest.raises(StateStoreError):
            sync(settings, "hubspot")
    contacts = emulator.hubspot.state()["contacts"].values()
    assert any(c.get(hubspot.SCORE) == "16" for c in contacts)  # u01's 11 + 5 landed

    source(0)
    sync(settings, "hubspot")
    hubspot.check_ownership(emulator, settings, users, accounts)
    assert notes_of_acknowledged(settings) == 0
    assert sync(settings, "hubspot").deliveries["hubspot"].counts["ok"] == 0
