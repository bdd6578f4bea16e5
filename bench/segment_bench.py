"""Segment delivery: accoil-sync against the plain segment-analytics-python client, same data, same run.

    python bench/segment_bench.py --users 100000

The emulator runs in its own process with no rate limit. accoil-sync's time is end to end (read the CSV,
validate, plan, deliver, commit state); the SDK's is only enqueue + flush of the same identifies.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from emulated import emulator_process, reset, state
from plan_bench import generate


def run_accoil(directory: Path, url: str) -> dict[str, float]:
    from accoil_sync.config.settings import load_settings
    from accoil_sync.sync.runner import execute

    (directory / "segment.toml").write_text(
        '[source]\nusers = "users.csv"\n[state]\npath = "state-segment/state.db"\n'
        f'[destinations.segment]\nenabled = true\nbase_url = "{url}/segment"\nmax_concurrency = 4\n'
        # Identifies only, as the SDK baseline sends: users.csv names accounts, and members mode would
        # add a group call per user (bench/segment_groups_bench.py measures that).
        'group_mode = "synthetic"\n'
    )
    os.environ["ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY"] = "wk_bench"
    settings = load_settings(directory / "segment.toml")
    start = time.perf_counter()
    # Every record changes between runs on purpose: the safety guards are not what is measured.
    result = asyncio.run(execute(settings, deliver=True, allow_mass_change=True))
    seconds = time.perf_counter() - start
    seg = state(url)["segment"]
    sent = result.deliveries["segment"].counts["ok"]
    return {
        "seconds": round(seconds, 2),
        "records": sent,
        "records_per_s": round(sent / seconds),
        "requests": seg["requests"]["total"],
        "records_per_request": round(sent / seg["requests"]["total"], 1),
        "held": len(seg["users"]),
        "dropped": sum(seg["dropped"].values()),
    }


def run_sdk(directory: Path, url: str, upload_size: int) -> dict[str, float]:
    from segment.analytics import Client

    with (directory / "users.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    client = Client(
        write_key="wk_bench", host=f"{url}/segment", upload_size=upload_size, max_queue_size=len(rows) + 1
    )
    start = time.perf_counter()
    for row in rows:
        client.identify(
            row["user_id"],
            {
                "Accoil_Default_Score": int(row["score"]),
                "Accoil_Default_Segments": [row["segments"]],
                "Accoil_Default_Activation": float(row["activation"]),
                "Accoil_Default_Adoption_Recent": float(row["adoption_recent"]),
                "Accoil_Default_Adoption_Ever": float(row["adoption_ever"]),
                "Accoil_Default_LastActive": row["last_active"],
                "Accoil_Default_Frequency": int(row["frequency"]),
            },
        )
    client.flush()
    seconds = time.perf_counter() - start
    client.join()
    seg = state(url)["segment"]
    held = len(seg["users"])
    return {
        "seconds": round(seconds, 2),
        "records": held,
        "records_per_s": round(held / seconds),
        "requests": seg["requests"]["total"],
        "records_per_request": round(held / max(1, seg["requests"]["total"]), 1),
        "dropped": sum(seg["dropped"].values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="accoil-segment-bench-") as tmp, emulator_process() as url:
        directory = Path(tmp)
        generate(directory, args.users)
        os.chdir(directory)
        results = {"accoil-sync": run_accoil(directory, url)}
        for size in (100, 1000):
            reset(url)
            results[f"segment-analytics-python upload_size={size}"] = run_sdk(directory, url, size)
        for name, r in results.items():
            print(f"{name:>42}: {r}")
        ours = results["accoil-sync"]["records_per_s"]
        for name, r in results.items():
            if name != "accoil-sync":
                print(f"accoil-sync / {name}: {ours / r['records_per_s']:.2f}x records/s")


if __name__ == "__main__":
    main()
