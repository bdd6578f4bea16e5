"""A deleted state store is noticed before it costs a full re-send: a new store while sync logs or the
jsonl destination show earlier deliveries stops the run (exit 74) with an explanation;
--accept-new-state re-sends on purpose; a first sync on a fresh install goes ahead."""

from __future__ import annotations

import shutil
from pathlib import Path

from accoil_sync.errors import EXIT_STATE
from tests.conftest import WriteConfig, write
from tests.unit.test_cli import cli


def lines() -> int:
    return len(Path("out/deliveries.jsonl").read_text().splitlines())


def test_a_deleted_state_store_is_explained_before_anything_is_re_sent(
    make_settings: WriteConfig, tmp_path: Path
) -> None:
    write(tmp_path / "users.csv", "user_id,score\nu1,1\nu2,2\nu3,3\n")
    make_settings()
    assert cli("sync", "-c", "accoil-sync.toml").returncode == 0  # a fresh install syncs
    assert lines() == 3
    for suffix in ("", "-wal", "-shm"):
        Path(f"state/state.db{suffix}").unlink(missing_ok=True)

    refused = cli("sync", "-c", "accoil-sync.toml")
    message = " ".join(refused.stderr.split())
    assert refused.returncode == EXIT_STATE, refused.stderr
    assert "state/state.db is new" in message and "sync log(s) of earlier runs" in message
    assert "out/deliveries.jsonl holds deliveries (the last by run " in message
    assert "--accept-new-state" in message and "Traceback" not in message
    assert lines() == 3  # nothing was sent

    planned = cli("plan", "-c", "accoil-sync.toml")
    assert "a sync would refuse" in planned.stderr

    assert cli("sync", "-c", "accoil-sync.toml", "--accept-new-state").returncode == 0
    assert lines() == 6  # re-sent on purpose
    assert cli("sync", "-c", "accoil-sync.toml").returncode == 0  # the new store is in use now
    assert lines() == 6


def test_the_jsonl_file_alone_is_evidence(make_settings: WriteConfig, tmp_path: Path) -> None:
    write(tmp_path / "users.csv", "user_id,score\nu1,1\n")
    make_settings()
    assert cli("sync", "-c", "accoil-sync.toml").returncode == 0
    shutil.rmtree("state")  # the whole state directory, sync logs included
    refused = cli("sync", "-c", "accoil-sync.toml")
    assert refused.returncode == EXIT_STATE and "jsonl destination" in refused.stderr
