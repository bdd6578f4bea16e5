"""kill -9 at random points of a 5,000-user sync to Segment, Intercom and HubSpot; then a clean run.

Afterwards every vendor must hold exactly the source's values -- no record lost, no tag missing or extra,
no duplicate contact, and Segment holding one message per user after its messageId de-duplication.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from accoil_sync.config.settings import load_settings
from accoil_sync.emulator import Emulator
from accoil_sync.sources import Stage, load_stage
from accoil_sync.traits import HubSpotEncoder, IntercomEncoder, ObjectKind, TraitsEncoder

USERS = 5_000
KILL_POINTS = 20
SEED = 20261123
SECRETS = {
    "ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY": "wk-chaos",
    "ACCOIL_SYNC_DESTINATIONS__INTERCOM__ACCESS_TOKEN": "tok-chaos",
    "ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN": "pat-chaos",
}


@pytest.fixture
def emulator() -> Emulator:
    return Emulator("unlimited", seed=SEED)


def write_source(directory: Path) -> None:
    rng = random.Random(SEED)
    segments = ["Most Engaged", "Engaged", "At Risk", "Dormant", "Power Users"]
    with (directory / "users.csv").open("w") as fh:
        fh.write("user_id,email,account_id,score,segments,activation,last_active,frequency\n")
        for n in range(USERS):
            chosen = ";".join(rng.sample(segments, rng.randint(0, 2)))
            fh.write(
                f"u{n},user{n}@example.com,acc{n % 50},{rng.randint(0, 100)},{chosen},"
                f"{rng.randint(0, 100)},2026-11-{rng.randint(1, 22):02d}T10:00:00Z,{rng.randint(0, 7)}\n"
            )


def test_kill_nine_at_random_points_loses_and_duplicates_nothing(
    served: str,
    emulator: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_source(tmp_path)
    config = tmp_path / "chaos.toml"
    config.write_text(f"""
[source]
users = "users.csv"
[state]
path = "state/state.db"
[destinations.segment]
enabled = true
base_url = "{served}/segment"
[destinations.intercom]
enabled = true
base_url = "{served}/intercom"
create_missing_contacts = true
tag_prefix = "Accoil: "
attach_users_to_companies = false
[destinations.hubspot]
enabled = true
base_url = "{served}/hubspot"
create_missing = true
""")
    env = {**os.environ, **SECRETS}
    command = [sys.executable, "-m", "accoil_sync", "sync", "-c", str(config), "--log-level", "ERROR"]
    rng = random.Random(SEED)
    kills, runs = 0, 0
    started = time.monotonic()
    while kills < KILL_POINTS:
        runs += 1
        proc = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.5, 4.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert runs < 200, "the sync never got far enough to be killed"
    requests_before_final = sum(v.counters()["total"] for v in emulator.vendors.values())
    final = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert final.returncode == 0, final.stderr[-2000:]
    elapsed = time.monotonic() - started
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert again.returncode == 0

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(config)
    monkeypatch.chdir(tmp_path)
    stage = load_stage(Stage(tmp_path / "verify", settings.profiles, "verify"), settings.source)
    records = stage.records(ObjectKind.USER, [f"u{n}" for n in range(USERS)])
    stage.close()
    assert len(records) == USERS

    segment = emulator.segment.state()
    traits = TraitsEncoder()
    assert segment["users"] == {key: traits.encode(r) for key, r in records.items()}
    assert segment["messages"] == USERS  # each user's one delivery, once, after de-duplication

    intercom = emulator.intercom.state()
    assert len(emulator.intercom.contacts) == USERS  # no contact created twice
    encoder = IntercomEncoder("Accoil: ")
    for key, record in records.items():
        want = encoder.encode(record)
        tags = want.pop("tags")
        got = intercom["contacts"][key]
        expected_attributes = {k: v for k, v in want.items() if v != ""}
        assert got["custom_attributes"] == expected_attributes, key
        assert got["tags"] == tags, key

    hubspot = emulator.hubspot.state()
    assert len(hubspot["contacts"]) == USERS  # upserts by email never duplicate
    by_email = {c["email"]: c for c in hubspot["contacts"].values()}
    hub = HubSpotEncoder()
    for key, record in records.items():
        props = by_email[f"user{key[1:]}@example.com"]
        for name, value in hub.encode(record).items():
            if value != "":
                assert props.get(name) == value, (key, name)

    extra = sum(v.counters()["total"] for v in emulator.vendors.values())
    with capsys.disabled():
        print(
            f"\nchaos: {kills} kill -9 points over {runs} interrupted runs, then a clean run "
            f"({elapsed:.0f}s); vendor requests {extra} in all, {extra - requests_before_final} after the "
            f"last kill; Segment dropped {segment['duplicates_dropped']} re-sent duplicates by messageId"
        )
