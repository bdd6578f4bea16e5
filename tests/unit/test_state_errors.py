"""A state store that cannot be opened, read or written ends in one message naming the file and what to
do (exit 74), never a traceback: missing directory, corrupt or truncated file, a newer schema, a lock held
too long, a read-only file, a full disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from accoil_sync.errors import EXIT_STATE, StateStoreError
from accoil_sync.sync import state as state_module
from accoil_sync.sync.state import MIGRATIONS, StateStore, explain
from tests.conftest import WriteConfig, write
from tests.unit.test_cli import cli


@pytest.fixture
def configured(make_settings: WriteConfig, tmp_path: Path) -> Path:
    write(tmp_path / "users.csv", "user_id,score\nu1,1\nu2,2\n")
    make_settings()
    return tmp_path / "state" / "state.db"


def assert_clear(result: object, path: Path, words: str) -> None:
    assert result.returncode == EXIT_STATE, result.stderr  # type: ignore[attr-defined]
    stderr = " ".join(result.stderr.split())  # type: ignore[attr-defined]
    assert str(path) in stderr or str(path.name) in stderr
    assert words in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("command", ["sync", "status", "plan"])
def test_a_corrupt_store_is_named_with_what_to_do(configured: Path, command: str) -> None:
    write(configured, "this is not a SQLite database, it was overwritten by mistake\n" * 20)
    assert_clear(cli(command, "-c", "accoil-sync.toml"), configured, "restore it from a backup")


def test_a_truncated_store_is_named_with_what_to_do(configured: Path) -> None:
    assert cli("sync", "-c", "accoil-sync.toml").returncode == 0
    data = configured.read_bytes()
    for suffix in ("-wal", "-shm"):
        Path(str(configured) + suffix).unlink(missing_ok=True)
    configured.write_bytes(data[: len(data) // 3])
    result = cli("status", "-c", "accoil-sync.toml")
    assert_clear(result, configured, "damaged")


def test_a_state_path_under_a_file_is_named(make_settings: WriteConfig, tmp_path: Path) -> None:
    write(tmp_path / "users.csv", "user_id,score\nu1,1\n")
    write(tmp_path / "state", "a file where the state directory should be\n")
    make_settings()
    result = cli("sync", "-c", "accoil-sync.toml")
    assert_clear(result, tmp_path / "state" / "state.db", "check that state.path is right")


def test_a_store_from_a_newer_version_is_refused_with_the_upgrade_advice(configured: Path) -> None:
    assert cli("sync", "-c", "accoil-sync.toml").returncode == 0
    db = sqlite3.connect(configured)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    db.close()
    for command in ("sync", "status"):
        assert_clear(cli(command, "-c", "accoil-sync.toml"), configured, "upgrade accoil-sync")


def test_a_lock_held_too_long_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.db"
    StateStore(path).close()
    monkeypatch.setattr(state_module, "BUSY_SECONDS", 0.2)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    store = StateStore(path)
    with pytest.raises(StateStoreError) as caught:
        store.set_fact("x", "1")
    assert str(path) in str(caught.value) and "another process kept it locked" in str(caught.value)
    blocker.execute("ROLLBACK")
    store.set_fact("x", "1")  # the store is usable once the lock is gone
    store.close()
    blocker.close()


@pytest.mark.parametrize(
    ("sqlite_message", "advice"),
    [
        ("attempt to write a readonly database", "read-only for this user"),
        ("database or disk is full", "the disk is full"),
        ("database disk image is malformed", "restore it from a backup"),
        ("unable to open database file", "check that state.path is right"),
    ],
)
def test_every_sqlite_failure_becomes_advice(sqlite_message: str, advice: str) -> None:
    error = explain(Path("/data/state.db"), "record a write", sqlite3.OperationalError(sqlite_message))
    assert error.exit_code == EXIT_STATE
    assert str(error).startswith("state store /data/state.db: cannot record a write: " + sqlite_message)
    assert advice in str(error)


def test_a_write_that_cannot_be_committed_is_rolled_back_and_explained(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    with pytest.raises(StateStoreError, match=r"s\.db: cannot record a write"), store.transaction() as db:
        db.execute("INSERT INTO facts VALUES ('a', '1')")
        raise sqlite3.OperationalError("database or disk is full")
    assert store.get_fact("a") is None and not store.db.in_transaction
    store.close()
