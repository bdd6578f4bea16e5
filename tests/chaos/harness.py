"""What the chaos tests share: a seeded source, a config aimed at the emulator, and the check that every
vendor holds exactly the source's values."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from accoil_sync.config.settings import load_settings
from accoil_sync.emulator import Emulator, EmulatorServer
from accoil_sync.sources import Stage, load_stage
from accoil_sync.traits import HubSpotEncoder, IntercomEncoder, ObjectKind, TraitsEncoder

SEED = 20261123
SECRETS = {
    "ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY": "wk-chaos",
    "ACCOIL_SYNC_DESTINATIONS__INTERCOM__ACCESS_TOKEN": "tok-chaos",
    "ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN": "pat-chaos",
}


def write_source(directory: Path, users: int) -> None:
    rng = random.Random(SEED)
    segments = ["Most Engaged", "Engaged", "At Risk", "Dormant", "Power Users"]
    with (directory / "users.csv").open("w") as fh:
        fh.write("user_id,email,account_id,score,segments,activation,last_active,frequency\n")
        for n in range(users):
            chosen = ";".join(rng.sample(segments, rng.randint(0, 2)))
            fh.write(
                f"u{n},user{n}@example.com,acc{n % 50},{rng.randint(0, 100)},{chosen},"
                f"{rng.randint(0, 100)},2026-11-{rng.randint(1, 22):02d}T10:00:00Z,{rng.randint(0, 7)}\n"
            )


def write_config(directory: Path, served: str, *, timeout_seconds: float = 30) -> Path:
    config = directory / "chaos.toml"
    config.write_text(f"""
[source]
users = "users.csv"
[state]
path = "state/state.db"
[destinations.segment]
enabled = true
base_url = "{served}/segment"
timeout_seconds = {timeout_seconds}
[destinations.intercom]
enabled = true
base_url = "{served}/intercom"
create_missing_contacts = true
tag_prefix = "Accoil: "
attach_users_to_companies = false
timeout_seconds = {timeout_seconds}
[destinations.hubspot]
enabled = true
base_url = "{served}/hubspot"
create_missing = true
timeout_seconds = {timeout_seconds}
""")
    return config


def sync_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "accoil_sync", "sync", "-c", str(config), "--log-level", "ERROR"]


def run_sync(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sync_command(config),
        cwd=config.parent,
        env={**os.environ, **SECRETS},
        capture_output=True,
        text=True,
        check=False,
    )


def kill_at_random_points(
    config: Path,
    points: int,
    rng: random.Random,
    low: float,
    high: float,
    max_runs: int = 200,
    before: Callable[[int], None] | None = None,
) -> int:
    """Start syncs and ``kill -9`` each ``uniform(low, high)`` seconds in, until ``points`` kills landed
    (a sync that finished first does not count). ``before(run)`` is called before each run starts (a
    source that moves between runs). Returns the number of runs started."""
    env = {**os.environ, **SECRETS}
    kills, runs = 0, 0
    while kills < points:
        runs += 1
        if before is not None:
            before(runs)
        proc = subprocess.Popen(
            sync_command(config),
            cwd=config.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(low, high))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert runs < max_runs, "the sync never got far enough to be killed"
    return runs


def total_requests(emulator: Emulator) -> int:
    return sum(v.counters()["total"] for v in emulator.vendors.values())


def assert_vendors_hold_the_source(
    emulator: Emulator, config: Path, users: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every vendor holds exactly the source's values: nothing lost, nothing extra, nothing twice."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(config.parent)
    settings = load_settings(config)
    stage = load_stage(Stage(config.parent / "verify", settings.profiles, "verify"), settings.source)
    records = stage.records(ObjectKind.USER, [f"u{n}" for n in range(users)])
    stage.close()
    assert len(records) == users

    segment = emulator.segment.state()
    traits = TraitsEncoder()
    assert segment["users"] == {key: traits.encode(r) for key, r in records.items()}
    # Each user's identify and its group call linking it to its account (group_mode = "members"), once
    # each after de-duplication.
    assert segment["messages"] == 2 * users
    accounts = {r.account_id for r in records.values()}
    assert segment["members"] == {
        a: sorted(k for k, r in records.items() if r.account_id == a) for a in sorted(accounts)
    }

    intercom = emulator.intercom.state()
    assert len(emulator.intercom.contacts) == users  # no contact created twice
    encoder = IntercomEncoder("Accoil: ")
    for key, record in records.items():
        want = encoder.encode(record)
        tags = want.pop("tags")
        got = intercom["contacts"][key]
        assert got["custom_attributes"] == {k: v for k, v in want.items() if v != ""}, key
        assert got["tags"] == tags, key

    hubspot = emulator.hubspot.state()
    assert len(hubspot["contacts"]) == users  # upserts by email never duplicate
    by_email = {c["email"]: c for c in hubspot["contacts"].values()}
    hub = HubSpotEncoder()
    for key, record in records.items():
        props = by_email[f"user{key[1:]}@example.com"]
        for name, value in hub.encode(record).items():
            if value != "":
                assert props.get(name) == value, (key, name)


def run_profile(
    profile: str, directory: Path, users: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, float]:
    """Sync the seeded source through the emulator's ``profile``, re-run it (nothing to send), check the
    vendors hold the source; returns (vendor requests, seconds of the first run)."""
    emulator = Emulator(profile, seed=SEED)
    directory.mkdir(parents=True)
    write_source(directory, users)
    with EmulatorServer(emulator) as url:
        config = write_config(directory, url, timeout_seconds=1)
        started = time.monotonic()
        done = run_sync(config)
        elapsed = time.monotonic() - started
        assert done.returncode == 0, f"{profile}: {done.stdout[-4000:]} {done.stderr[-3000:]}"
        again = run_sync(config)
        assert again.returncode == 0, f"{profile} re-run: {again.stdout[-4000:]} {again.stderr[-3000:]}"
    requests = total_requests(emulator)
    assert_vendors_hold_the_source(emulator, config, users, monkeypatch)
    return requests, elapsed
