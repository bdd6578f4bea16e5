"""Segment accounts: group_mode "members" against "synthetic" on the same users and accounts.

    python bench/segment_groups_bench.py --users 100000

A first sync of users (with their account_id) and accounts (one per ten users) into the emulator, then a
run where every account's score changed, once per mode. Reported per run: wall time, messages Segment
accepted, requests, the request and message mix the emulator counted, and the tracked users (MTUs, as
Segment counts them) the messages add up to.
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
from emulated import emulator_process, reset, state
from plan_bench import generate


def sync(directory: Path, url: str, mode: str) -> dict[str, Any]:
    from accoil_sync.config.settings import load_settings
    from accoil_sync.sync.runner import execute

    (directory / f"{mode}.toml").write_text(
        f'[source]\nusers = "users.csv"\naccounts = "accounts.csv"\n[state]\npath = "state-{mode}/state.db"\n'
        f'[destinations.segment]\nenabled = true\nbase_url = "{url}/segment"\nmax_concurrency = 4\n'
        f'group_mode = "{mode}"\n'
    )
    settings = load_settings(directory / f"{mode}.toml")
    before = state(url)["segment"]
    start = time.perf_counter()
    # Every record changes between runs on purpose: the safety guards are not what is measured.
    result = asyncio.run(execute(settings, deliver=True, allow_mass_change=True))
    seconds = time.perf_counter() - start
    after = state(url)["segment"]
    # Accepted messages from the emulator's per-call counters (its message list keeps only the newest).
    messages = sum(after["requests"]["by_message"].values()) - sum(before["requests"]["by_message"].values())
    return {
        "seconds": round(seconds, 2),
        "objects_ok": result.deliveries["segment"].counts["ok"],
        "messages": messages,
        "messages_per_s": round(messages / seconds),
        "requests": after["requests"]["total"] - before["requests"]["total"],
        "by_message": after["requests"]["by_message"],
        "tracked_users": after["tracked_users"],
        "linked_groups": len(after["members"]),
        "dropped": sum(after["dropped"].values()),
    }


def bump_accounts(directory: Path) -> None:
    path = directory / "accounts.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    score = header.index("score")
    out = [lines[0]]
    for line in lines[1:]:
        cells = line.split(",")
        cells[score] = str((int(cells[score]) + 1) % 101)
        out.append(",".join(cells))
    path.write_text("\n".join(out) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    os.environ["ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY"] = "wk_bench"
    with tempfile.TemporaryDirectory(prefix="accoil-segment-groups-") as tmp, emulator_process() as url:
        directory = Path(tmp)
        os.chdir(directory)
        for mode in ("synthetic", "members"):
            generate(directory, args.users)
            reset(url)
            first = sync(directory, url, mode)
            bump_accounts(directory)
            changed = sync(directory, url, mode)
            print(f"{mode:>9} first sync:        {first}")
            print(f"{mode:>9} accounts changed:  {changed}")


if __name__ == "__main__":
    main()
