"""kill -9 at random points of a 5,000-user sync to Segment, Intercom and HubSpot; then a clean run.

Afterwards every vendor must hold exactly the source's values -- no record lost, no tag missing or extra,
no duplicate contact, and Segment holding one message per user after its messageId de-duplication.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from accoil_sync.emulator import Emulator
from tests.chaos.harness import (
    SEED,
    assert_vendors_hold_the_source,
    kill_at_random_points,
    run_sync,
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
    started = time.monotonic()
    runs = kill_at_random_points(config, KILL_POINTS, random.Random(SEED), 0.5, 4.0)
    kills = KILL_POINTS
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
