"""Intercom delivery under the real per-app limit (10,000 calls a minute = 1,666 per 10 s).

    python bench/intercom_bench.py --contacts 20000 --new 2000

The emulator starts with the contacts already in Intercom (created an hour ago, so search has indexed
them). Run 1 finds them (batched search) and writes their attributes and segment tags; then, measured:
run 2 every score changes (steady state: Intercom ids from state), run 3 every contact moves to another
segment (one tag gained, one lost, the Segments attribute), run 4 ``--new`` users appear and are created
(``create_missing_contacts``), and run 5 nothing changed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from emulated import emulator_process, state

LIMIT_PER_S = 1666 / 10


def prebuilt(path: Path, n: int) -> None:
    from accoil_sync.emulator import Emulator

    emulator = Emulator("clean", persist=path)
    created = time.time() - 3600
    for i in range(n):
        cid = f"{i + 1:024x}"
        emulator.intercom.contacts[cid] = {
            "id": cid,
            "external_id": f"u{i}",
            "email": f"user{i}@example.com",
            "role": "user",
            "name": None,
            "created": created,
            "updated": created,
            "custom_attributes": {},
        }
    emulator.intercom.seq = n + 10
    emulator.save()


SEGMENTS = ("Champions", "Engaged", "At Risk")


def write_users(path: Path, n: int, bump: int, shift: int = 0, new: int = 0) -> None:
    with path.open("w") as fh:
        fh.write("user_id,email,score,activation,segments\n")
        for i in range(n + new):
            segment = SEGMENTS[(i + shift) % len(SEGMENTS)]
            fh.write(f"u{i},user{i}@example.com,{(i + bump) % 101},{(i * 3 + bump) % 101},{segment}\n")


def run(directory: Path, url: str) -> dict[str, Any]:
    from accoil_sync.config.settings import load_settings
    from accoil_sync.sync.runner import execute

    settings = load_settings(directory / "intercom.toml")
    before = state(url)["intercom"]["requests"]
    start = time.perf_counter()
    # Every record changes between runs on purpose: the safety guards are not what is measured.
    result = asyncio.run(execute(settings, deliver=True, allow_mass_change=True))
    seconds = time.perf_counter() - start
    after = state(url)["intercom"]["requests"]
    requests = after["total"] - before["total"]
    ok = result.deliveries["intercom"].counts["ok"]
    by_endpoint = {
        k: v - before["by_endpoint"].get(k, 0)
        for k, v in after["by_endpoint"].items()
        if v != before["by_endpoint"].get(k, 0)
    }
    return {
        "seconds": round(seconds, 1),
        "contacts": ok,
        "requests": requests,
        "requests_per_s": round(requests / seconds, 1),
        "share_of_limit": round(requests / seconds / LIMIT_PER_S, 3),
        "requests_per_contact": round(requests / max(ok, 1), 4),
        "by_endpoint": by_endpoint,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--new", type=int, default=2_000)
    args = parser.parse_args()
    os.environ["ACCOIL_SYNC_DESTINATIONS__INTERCOM__ACCESS_TOKEN"] = "tok-bench"
    with tempfile.TemporaryDirectory(prefix="accoil-intercom-bench-") as tmp:
        directory = Path(tmp)
        os.chdir(directory)
        prebuilt(directory / "emulator.db", args.contacts)
        with emulator_process("clean", "--persist", str(directory / "emulator.db")) as url:
            (directory / "intercom.toml").write_text(
                '[source]\nusers = "users.csv"\n[state]\npath = "state/state.db"\n'
                f'[destinations.intercom]\nenabled = true\nbase_url = "{url}/intercom"\nmax_concurrency = 4\n'
                "create_missing_contacts = true\n"
            )
            runs = [
                ("run 1 (find + write)", {"bump": 0}),
                ("run 2 (scores change)", {"bump": 1}),
                ("run 3 (segment reshuffle)", {"bump": 1, "shift": 1}),
                ("run 4 (new contacts)", {"bump": 1, "shift": 1, "new": args.new}),
                ("run 5 (nothing changed)", {"bump": 1, "shift": 1, "new": args.new}),
            ]
            for label, shape in runs:
                write_users(directory / "users.csv", args.contacts, **shape)
                time.sleep(10)  # the next scheduled run: the previous window has passed
                print(f"{label:>28}: {run(directory, url)}", flush=True)
            print(f"limit {LIMIT_PER_S:.1f} requests/s")


if __name__ == "__main__":
    main()
