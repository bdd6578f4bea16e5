"""kill -9 at random points of a 5,000-user sync to Segment, Intercom and HubSpot; then a clean run.

Afterwards every vendor must hold exactly the source's values -- no record lost, no tag missing or extra,
no duplicate contact, and Segment holding one message per user after its messageId de-duplication.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from accoil_sync.emulator import Emulator
from tests.chaos.harness import (
    SECRETS,
    SEED,
    assert_vendors_hold_the_source,
    run_sync,
    sync_command,
    total_requests,
    write_config,
    write_source,
)

USERS = 5_000
KILL_POINTS = 20


@pytest.fixture
def emulator() -> Emulator:
    return Emulator("unlimited", seed=SEED)


def test_kill_nine_at_random_points_loses_and_duplicates_nothing(
    served: str,
    emulator: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_source(tmp_path, USERS)
    config = write_config(tmp_path, served)
    env = {**os.environ, **SECRETS}
    rng = random.Random(SEED)
    kills, runs = 0, 0
    started = time.monotonic()
    while kills < KILL_POINTS:
        runs += 1
        proc = subprocess.Popen(
            sync_command(config), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.5, 4.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert runs < 200, "the sync never got far enough to be killed"
    requests_before_final = total_requests(emulator)
    final = run_sync(config)
    assert final.returncode == 0, final.stderr[-2000:]
    elapsed = time.monotonic() - started
    assert run_sync(config).returncode == 0

    assert_vendors_hold_the_source(emulator, config, USERS, monkeypatch)
    extra = total_requests(emulator)
    with capsys.disabled():
        print(
            f"\nchaos: {kills} kill -9 points over {runs} interrupted runs, then a clean run "
            f"({elapsed:.0f}s); vendor requests {extra} in all, {extra - requests_before_final} after the "
            f"last kill; Segment dropped {emulator.segment.state()['duplicates_dropped']} re-sent duplicates "
            "by messageId"
        )
