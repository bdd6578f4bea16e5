"""kill -9 at random points of a sync into a messy Intercom workspace, then a clean run: every contact that
carries metrics still carries its owner's, no contact is owned by two keys, and every synced user is
attached to its company (docs/IDENTITY.md). Bounded: 800 users, 6 kill points."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from accoil_sync.emulator import Emulator
from tests.chaos.harness import SEED, kill_at_random_points, run_sync
from tests.integration.test_intercom_identity import accounts, check_every_record, users, write_source

USERS = 800
KILL_POINTS = 6


@pytest.fixture
def emulator() -> Emulator:
    return Emulator("unlimited", seed=SEED, intercom_search_lag=0.5)


@pytest.mark.slow
def test_kill_nine_keeps_intercom_ownership_unique(served: str, emulator: Emulator, tmp_path: Path) -> None:
    manifest = emulator.seed_messy(users(0, USERS), accounts(0))["intercom"]
    write_source(tmp_path, 0, USERS)
    config = tmp_path / "chaos.toml"
    config.write_text(
        '[source]\nusers = "users.csv"\naccounts = "accounts.csv"\n[state]\npath = "state/state.db"\n'
        f'[destinations.intercom]\nenabled = true\nbase_url = "{served}/intercom"\n'
        "create_missing_contacts = true\ntimeout_seconds = 30\n"
    )
    # From 0.3 s: with the connector's plain requests a whole sync of these 800 users takes little more
    # than the process's start, and kills from 1.0 s on could miss every run (seen in CI).
    kill_at_random_points(config, KILL_POINTS, random.Random(SEED), 0.3, 2.5, max_runs=60)
    final = run_sync(config)
    assert final.returncode in (0, 1), final.stderr[-2000:]  # 1: conflicts and ambiguities are reported
    check_every_record(emulator, 0, manifest, create=True, count=USERS)
    db = sqlite3.connect(tmp_path / "state" / "state.db")
    shared = db.execute(
        "SELECT dest_id, count(*) FROM records WHERE destination = 'intercom' AND dest_id IS NOT NULL "
        "GROUP BY kind, dest_id HAVING count(*) > 1"
    ).fetchall()
    db.close()
    assert shared == []


@pytest.mark.slow
def test_kill_nine_while_the_source_moves_leaves_nothing_of_a_killed_run(
    served: str, emulator: Emulator, tmp_path: Path
) -> None:
    """The source changes before every run -- scores, segments and companies, often back to values an
    earlier run acknowledged -- so a tag, an attribute or an attach that a killed run sent and never
    committed is not undone by the next run's diff against state alone: the leftover write-ahead notes
    (sync/pending.py) make the next run write those fields again and remove those tags. Without them this
    ended with contacts carrying a segment tag they had left and a score the source had reverted."""
    manifest = emulator.seed_messy(users(0, USERS), accounts(0))["intercom"]
    config = tmp_path / "chaos.toml"
    config.write_text(
        '[source]\nusers = "users.csv"\naccounts = "accounts.csv"\n[state]\npath = "state/state.db"\n'
        # Every run changes most records: the mass-change guard would hold them.
        "[safety]\nallow_mass_change = true\n"
        f'[destinations.intercom]\nenabled = true\nbase_url = "{served}/intercom"\n'
        "create_missing_contacts = true\ntimeout_seconds = 30\n"
    )
    moves = random.Random(SEED + 1)

    def move(run: int) -> None:
        # Bumps 0-3: segments and scores shift with each bump, companies every second one.
        write_source(tmp_path, 0 if run == 1 else moves.randrange(4), USERS)

    kill_at_random_points(config, KILL_POINTS, random.Random(SEED), 0.3, 2.5, max_runs=60, before=move)
    write_source(tmp_path, 0, USERS)
    final = run_sync(config)
    assert final.returncode in (0, 1), final.stderr[-2000:]
    check_every_record(emulator, 0, manifest, create=True, count=USERS)
