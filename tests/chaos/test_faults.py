"""Seeded faults on every vendor -- 429 storms, 5xx bursts, dropped connections, slow responses -- and a
token revoked mid-run. Each run must end with the vendors holding exactly the source's values; the fault
runs are compared with a clean run of the same data for extra requests, which must stay bounded."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from accoil_sync.emulator import Emulator, EmulatorServer
from accoil_sync.sync.state import StateStore
from tests.chaos.harness import (
    SEED,
    assert_vendors_hold_the_source,
    run_profile,
    run_sync,
    write_config,
    write_source,
)

USERS = 300
# The emulator's fault profiles (accoil_sync/emulator/app.py): a 429 storm, 5xx bursts, dropped connections,
# slow responses -- on all three vendors -- and a clean run of the same data to compare with.
SCENARIOS = {
    "429 storm": "storm",
    "5xx bursts": "errors",
    "dropped connections": "drops",
    "slow responses": "slow",
}
# Expected extra attempts for a per-request fault rate p are p/(1-p) (0.43 for Segment's storm). The bound
# allows more than that (a timed-out request may also have reached the vendor) and still catches a retry
# loop gone wrong.
MAX_EXTRA_SHARE = 1.0


def test_every_fault_ends_in_the_source_state_with_bounded_extra_requests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_requests, clean_seconds = run_profile("unlimited", tmp_path / "clean", USERS, monkeypatch)
    lines = [f"faults ({USERS} users x 3 vendors): clean run {clean_requests} requests, {clean_seconds:.1f}s"]
    for name, profile in SCENARIOS.items():
        requests, seconds = run_profile(profile, tmp_path / profile, USERS, monkeypatch)
        extra = requests - clean_requests
        lines.append(
            f"  {name}: {requests} requests (+{extra}, +{extra / clean_requests:.0%}), "
            f"{seconds:.1f}s (+{seconds - clean_seconds:.1f}s)"
        )
        assert extra <= MAX_EXTRA_SHARE * clean_requests, lines[-1]
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_a_token_revoked_mid_run_stops_that_destination_keeps_what_was_acked_and_the_next_run_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = Emulator("unlimited", seed=SEED)
    write_source(tmp_path, USERS)
    with EmulatorServer(emulator) as url:
        config = write_config(tmp_path, url)
        stop = threading.Event()
        state_path = tmp_path / "state" / "state.db"

        def revoke_when_a_third_is_committed() -> None:
            # Watch the state store, not the request count: the token goes bad between committed batches.
            import sqlite3

            while not stop.is_set():
                try:
                    db = sqlite3.connect(f"file:{state_path}?mode=ro", uri=True)
                    (n,) = db.execute(
                        "SELECT count(*) FROM records WHERE destination = 'intercom' AND status = 'ok'"
                    ).fetchone()
                    db.close()
                except sqlite3.Error:
                    n = 0
                if n >= USERS // 3:
                    emulator.intercom.faults.revoked = True
                    return
                time.sleep(0.005)

        watcher = threading.Thread(target=revoke_when_a_third_is_committed, daemon=True)
        watcher.start()
        first = run_sync(config)
        stop.set()
        assert first.returncode == 3, first.stderr[-2000:]
        assert "intercom" in first.stderr and "401" in first.stderr
        store = StateStore(tmp_path / "state" / "state.db")
        acked = {k for part, rows in store.fingerprints("intercom", "user") if part == "ok" for k, _ in rows}
        segment_acked = sum(len(rows) for _, rows in store.fingerprints("segment", "user"))
        (run,) = store.runs(limit=1)
        store.close()
        assert run.status == "failed" and run.exit_code == 3
        held = {c.get("external_id") for c in emulator.intercom.contacts.values()}
        assert USERS // 3 <= len(acked) < USERS  # stopped part-way, with what was committed kept
        assert acked <= held  # everything committed was acknowledged by Intercom
        assert segment_acked == USERS  # the other destinations went on
        emulator.intercom.faults.revoked = False
        resumed = run_sync(config)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_vendors_hold_the_source(emulator, config, USERS, monkeypatch)
