"""Sentinel secrets, a full sync to every destination at debug level: they never show up anywhere a user
or a log collector would see them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import write

SENTINELS = {
    "ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY": "wk-SENTINEL-segment-4b1d",
    "ACCOIL_SYNC_DESTINATIONS__INTERCOM__ACCESS_TOKEN": "tok-SENTINEL-intercom-9c2e",
    "ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN": "pat-SENTINEL-hubspot-7a3f",
}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "accoil_sync", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **SENTINELS},
    )


def test_sentinels_never_appear(examples: Path, served: str, tmp_path: Path) -> None:
    write(
        tmp_path / "c.toml",
        f"""
        [source]
        users = "examples/users.csv"
        accounts = "examples/accounts.csv"
        [state]
        path = "state/state.db"
        [destinations.segment]
        enabled = true
        base_url = "{served}/segment"
        [destinations.intercom]
        enabled = true
        base_url = "{served}/intercom"
        create_missing_contacts = true
        [destinations.hubspot]
        enabled = true
        base_url = "{served}/hubspot"
        create_missing = true
    """,
    )
    outputs = [
        cli("config", "check", "-c", "c.toml"),
        cli("plan", "-c", "c.toml", "--json", "--log-level", "DEBUG"),
        cli("sync", "-c", "c.toml", "--log-format", "json", "--log-level", "DEBUG"),
        cli("status", "-c", "c.toml", "--json"),
        cli("sync", "-c", "c.toml", "--log-format", "human", "--log-level", "DEBUG"),
    ]
    assert [o.returncode for o in outputs] == [0, 1, 1, 0, 1]  # the example ships three bad rows
    text = "".join(o.stdout + o.stderr for o in outputs)
    assert "DEBUG" in text or '"level": "debug"' in text
    for secret in SENTINELS.values():
        assert secret not in text
    for path in Path("state").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(secret.encode() in data for secret in SENTINELS.values()), path
