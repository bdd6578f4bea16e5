"""The emulator must not be the bottleneck: HubSpot and Segment batch requests per minute, rate limits off.

    python bench/emulator_bench.py --seconds 20

The emulator runs in its own process (one core); the load comes from this process over loopback with
8 concurrent connections. HubSpot requests are 100-input batch upserts by email (new and existing
contacts); Segment requests are /v1/batch with 100 identifies each.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from emulated import emulator_process

CONCURRENCY = 8


async def setup_hubspot(client: httpx.AsyncClient) -> None:
    h = {"Authorization": "Bearer pat-bench"}
    await client.post(
        "/hubspot/crm/v3/properties/contacts/groups", headers=h, json={"name": "accoil", "label": "A"}
    )
    await client.post(
        "/hubspot/crm/v3/properties/contacts",
        headers=h,
        json={
            "name": "accoil_default_score",
            "label": "Accoil_Default_Score",
            "type": "number",
            "fieldType": "number",
            "groupName": "accoil",
        },
    )


def hubspot_request(n: int) -> tuple[str, dict[str, object], dict[str, str]]:
    inputs = [
        {
            "id": f"user{(n * 100 + i) % 50_000}@example.com",
            "idProperty": "email",
            "objectWriteTraceId": str(i),
            "properties": {"accoil_default_score": str((n + i) % 100)},
        }
        for i in range(100)
    ]
    return (
        "/hubspot/crm/v3/objects/contacts/batch/upsert",
        {"inputs": inputs},
        {"Authorization": "Bearer pat-bench"},
    )


def segment_request(n: int) -> tuple[str, dict[str, object], dict[str, str]]:
    batch = [
        {
            "type": "identify",
            "userId": f"u{n * 100 + i}",
            "messageId": f"m{n}-{i}",
            "traits": {"Accoil_Default_Score": i, "Accoil_Default_Segments": ["Engaged"]},
        }
        for i in range(100)
    ]
    return "/segment/v1/batch", {"batch": batch}, {"Authorization": "Basic d2s6"}


async def load(url: str, make: object, seconds: float) -> tuple[int, int]:
    done = errors = 0
    counter = iter(range(10**9))
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        if make is hubspot_request:
            await setup_hubspot(client)

        async def worker() -> None:
            nonlocal done, errors
            while time.monotonic() < deadline:
                path, body, headers = make(next(counter))  # type: ignore[operator]
                r = await client.post(path, json=body, headers=headers)
                done += 1
                errors += r.status_code >= 300

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done, errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    for name, make, target in (
        ("hubspot batch upsert (100)", hubspot_request, 2000),
        ("segment batch (100 events)", segment_request, 5000),
    ):
        with emulator_process("unlimited") as url:
            start = time.monotonic()
            done, errors = asyncio.run(load(url, make, args.seconds))
            per_minute = done / (time.monotonic() - start) * 60
        verdict = "ok" if per_minute >= target else "BELOW TARGET"
        print(
            f"{name:>28}: {per_minute:,.0f} requests/min ({done} in {args.seconds:.0f}s, {errors} non-2xx); "
            f"target {target:,}/min: {verdict}"
        )


if __name__ == "__main__":
    main()
