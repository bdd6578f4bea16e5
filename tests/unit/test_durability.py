"""Writes that cannot be committed are not repeated to the append-only jsonl destination, and the sync log
keeps the audit rows of a run killed at any moment."""

from __future__ import annotations

import asyncio
import errno
import json
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.connectors import jsonl as jsonl_module
from accoil_sync.errors import EXIT_STATE, StateStoreError
from accoil_sync.sync.runner import execute
from accoil_sync.sync.state import StateStore, explain
from accoil_sync.sync.synclog import SyncLog
from tests.conftest import WriteConfig, write

USERS = 50


@pytest.fixture
def settings(make_settings: WriteConfig, tmp_path: Path) -> Settings:
    write(tmp_path / "users.csv", "user_id,score\n" + "".join(f"u{i:02d},{i}\n" for i in range(USERS)))
    return make_settings(extra="batch_size = 5\n")  # appended to [destinations.jsonl]


def delivered() -> list[str]:
    return [json.loads(line)["key"] for line in Path("out/deliveries.jsonl").read_text().splitlines()]


def test_a_full_disk_under_the_state_store_takes_the_jsonl_batch_back(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = StateStore.commit_batch
    commits = 0

    def fill_up(self: StateStore, *args: Any) -> None:
        nonlocal commits
        commits += 1
        if commits > 3:
            raise explain(self.path, "record a write", sqlite3.OperationalError("database or disk is full"))
        real(self, *args)

    monkeypatch.setattr(StateStore, "commit_batch", fill_up)
    for _ in range(3):  # every retry on the full disk
        commits = 0
        with pytest.raises(StateStoreError, match="the disk is full"):
            asyncio.run(execute(settings, deliver=True))
    store = StateStore(settings.state.path)
    recorded = {k for (part, rows) in store.fingerprints("jsonl", "user") for k, *_ in rows}
    last = store.runs(1)[0]
    store.close()
    assert (last.status, last.exit_code) == ("failed", EXIT_STATE)  # the ledger says why it stopped
    assert last.message is not None and "the disk is full" in last.message
    assert len(recorded) == 45  # three batches of five a run: each run recorded the next three
    assert sorted(delivered()) == sorted(recorded)  # nothing the state does not know is in the file
    monkeypatch.setattr(StateStore, "commit_batch", real)
    assert asyncio.run(execute(settings, deliver=True)).exit_code == 0
    keys = delivered()
    assert len(keys) == len(set(keys)) == USERS  # each record exactly once


def test_a_failed_append_leaves_no_partial_batch(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = jsonl_module.os.fsync
    calls = 0

    def full(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(jsonl_module.os, "fsync", full)
    result = asyncio.run(execute(settings, deliver=True))
    stopped = result.deliveries["jsonl"].stopped
    assert result.exit_code == 3 and stopped is not None
    assert "out/deliveries.jsonl" in stopped and "No space left" in stopped
    assert len(delivered()) == 10  # the two batches that were written; the third was cut back off
    assert Path("out/deliveries.jsonl").read_text().endswith("\n")


def rows(run_id: str, keys: range) -> list[tuple[Any, ...]]:
    return [(run_id, "t", "jsonl", "user", f"u{i}", "upsert", ("b", "a"), "ok", None) for i in keys]


def test_a_killed_runs_sync_log_keeps_every_committed_batch(tmp_path: Path) -> None:
    directory = tmp_path / "synclog"
    killed = SyncLog(directory, "r1")
    for start in range(0, 30, 10):  # three commits, each flushed
        killed.extend(rows("r1", range(start, start + 10)))
    # kill -9: no close(); the last batch's write was cut short as well
    stream = directory / "run-r1.arrows"
    data = stream.read_bytes()
    stream.write_bytes(data[:-40])
    SyncLog(directory, "r2")  # the next run turns the stream into the run's Parquet file
    assert not stream.exists()
    table = pq.read_table(directory / "run-r1.parquet")
    assert table.column("key").to_pylist() == [f"u{i}" for i in range(20)]
    assert table.column("changed_fields").to_pylist()[0] == ["a", "b"]


def test_a_finished_runs_sync_log_is_one_parquet_file(settings: Settings) -> None:
    asyncio.run(execute(settings, deliver=True))
    (log,) = Path("state/synclog").glob("run-*")
    assert log.suffix == ".parquet" and pq.read_table(log).num_rows == USERS


@pytest.mark.slow
def test_kill_nine_mid_run_keeps_the_audit_rows_of_every_committed_batch(
    make_settings: WriteConfig, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys
    import time

    write(tmp_path / "users.csv", "user_id,score\n" + "".join(f"u{i:06d},{i % 100}\n" for i in range(60_000)))
    make_settings(extra="batch_size = 50\n")
    command = [sys.executable, "-m", "accoil_sync", "sync", "-c", "accoil-sync.toml", "--log-level", "ERROR"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(Path("state/synclog").glob("*.arrows")):
        time.sleep(0.05)
    time.sleep(0.5)  # some batches committed, the run far from done
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = StateStore(Path("state/state.db"))
    committed = {k for (_, rows) in store.fingerprints("jsonl", "user") for k, *_ in rows}
    store.close()
    assert 0 < len(committed) < 60_000, "the kill did not land mid-run"
    assert not list(Path("state/synclog").glob("*.parquet"))  # the run never closed its log

    assert subprocess.run(command, check=False).returncode == 0  # takes the dead run's lease, finishes
    logged = set()
    for log in Path("state/synclog").glob("run-*.parquet"):
        logged |= set(pq.read_table(log, columns=["key"]).column("key").to_pylist())
    assert committed <= logged  # every record the killed run delivered and recorded is in its audit log
    assert len(list(Path("state/synclog").glob("run-*.parquet"))) == 2
