"""HubSpot delivery at the Professional tier's limit (190 requests / 10 s): accoil-sync against the obvious
script (hubspot-api-client, one contact per call), same emulator, same run.

    python bench/hubspot_bench.py --contacts 50000 --new 5000 --baseline 1000

1. accoil-sync creates the contacts (a first sync: looked up by email, then created by upsert on email),
2. every score changes and accoil-sync syncs again (measured: batch/update by the HubSpot ids kept in
state), 3. an unchanged re-run (must send nothing: the schema comes from its cache), 4. every contact moves
to another segment (existing options), 5. --new contacts join (a first sync for them). The baseline updates
--baseline contacts one call at a time with a sleep-and-retry on 429, as such scripts do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from emulated import emulator_process, state

REQUESTS_PER_S = 190 / 10  # the Professional tier's limit
CEILING_PER_S = 100 * REQUESTS_PER_S  # records: 100 per batch at the request limit


SEGMENTS = ("Engaged", "At Risk", "Champions")


def write_users(path: Path, n: int, bump: int, shift: int = 0) -> None:
    """``bump`` changes every score, ``shift`` moves every contact to another segment."""
    with path.open("w") as fh:
        fh.write("user_id,email,score,segments,activation\n")
        for i in range(n):
            segment = SEGMENTS[(i + shift) % len(SEGMENTS)]
            fh.write(f"u{i},user{i}@example.com,{(i + bump) % 101},{segment},{(i * 7 + bump) % 101}\n")


def run_accoil(directory: Path, url: str) -> dict[str, float]:
    from accoil_sync.config.settings import load_settings
    from accoil_sync.sync.runner import execute

    settings = load_settings(directory / "hubspot.toml")
    before_all = state(url)["hubspot"]["requests"]
    before = before_all["total"]
    start = time.perf_counter()
    # Every record changes between runs on purpose: the safety guards are not what is measured.
    result = asyncio.run(execute(settings, deliver=True, allow_mass_change=True))
    seconds = time.perf_counter() - start
    after = state(url)["hubspot"]["requests"]
    requests = after["total"] - before
    print(f"    emulator answers so far: {after['by_status']}")
    ok = result.deliveries["hubspot"].counts["ok"]
    return {
        "seconds": round(seconds, 1),
        "records": ok,
        "records_per_s": round(ok / seconds),
        "share_of_ceiling": round(ok / seconds / CEILING_PER_S, 3),
        # of the request limit: the same for batch updates (one request per 100 records), and the measure
        # that applies to a first sync's lookups and creates (two requests per 100)
        "share_of_request_limit": round(requests / seconds / REQUESTS_PER_S, 3),
        "requests": requests,
        "requests_per_record": round(requests / max(ok, 1), 5),
        "by_endpoint": {
            k: v - before_all["by_endpoint"].get(k, 0)
            for k, v in after["by_endpoint"].items()
            if v != before_all["by_endpoint"].get(k, 0)
        },
    }


def run_baseline(url: str, n: int) -> dict[str, float]:
    from hubspot import HubSpot
    from hubspot.crm.contacts import ApiException, SimplePublicObjectInput

    ids = list(state(url)["hubspot"]["contacts"])[:n]
    api = HubSpot(access_token="pat-bench", host=f"{url}/hubspot").crm.contacts.basic_api
    retries = 0
    start = time.perf_counter()
    for number, contact_id in enumerate(ids):
        while True:
            try:
                api.update(
                    contact_id,
                    SimplePublicObjectInput(properties={"accoil_default_score": str(number % 100)}),
                )
                break
            except ApiException as exc:
                if exc.status != 429:
                    raise
                retries += 1
                time.sleep(1)
    seconds = time.perf_counter() - start
    api.api_client.rest_client.pool_manager.clear()
    return {
        "seconds": round(seconds, 1),
        "records": n,
        "records_per_s": round(n / seconds, 1),
        "requests_per_record": round((n + retries) / n, 3),
        "retries_after_429": retries,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument("--new", type=int, default=5_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    args = parser.parse_args()
    os.environ["ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN"] = "pat-bench"
    with tempfile.TemporaryDirectory(prefix="accoil-hubspot-bench-") as tmp, emulator_process("clean") as url:
        directory = Path(tmp)
        os.chdir(directory)
        (directory / "hubspot.toml").write_text(
            '[source]\nusers = "users.csv"\n[state]\npath = "state/state.db"\n'
            f'[destinations.hubspot]\nenabled = true\nbase_url = "{url}/hubspot"\ntier = "professional"\n'
            "create_missing = true\n"
        )
        write_users(directory / "users.csv", args.contacts, 0)
        created = run_accoil(directory, url)
        print(f"{'first sync (lookup + create)':>34}: {created}")
        write_users(directory / "users.csv", args.contacts, 1)
        time.sleep(10)  # a scheduled run starts after the previous one's window has passed
        changed = run_accoil(directory, url)
        print(f"{'update every contact (measured)':>34}: {changed}")
        unchanged = run_accoil(directory, url)
        print(f"{'unchanged re-run':>34}: {unchanged}")
        assert unchanged["requests"] == 0, "an unchanged re-run must send HubSpot nothing"
        write_users(directory / "users.csv", args.contacts, 1, shift=1)
        time.sleep(10)
        reshuffled = run_accoil(directory, url)
        print(f"{'segment reshuffle (measured)':>34}: {reshuffled}")
        write_users(directory / "users.csv", args.contacts + args.new, 1, shift=1)
        time.sleep(10)
        new = run_accoil(directory, url)
        print(f"{'new records (first sync)':>34}: {new}")
        baseline = run_baseline(url, args.baseline)
        print(f"{'hubspot-api-client, 1 per call':>34}: {baseline}")
        print(
            f"ceiling {CEILING_PER_S:.0f} records/s; the measured run reached {changed['share_of_ceiling']:.1%} of it "
            f"(wall clock, planning included); {changed['records_per_s'] / baseline['records_per_s']:.0f}x the "
            "one-per-call script's records/s"
        )


if __name__ == "__main__":
    main()
