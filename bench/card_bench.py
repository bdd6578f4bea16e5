"""Card endpoint latency on loopback with N objects in the state store, beside a bare ASGI endpoint.

    python bench/card_bench.py --objects 100000 --rate 300 --seconds 30
    python bench/card_bench.py --objects 100000 --rate 100 --seconds 30 --during-sync

``--during-sync`` measures the card twice on one ``serve`` (scheduler on): idle, then while re-plans of the
whole store (nothing changed) run back to back through the trigger API; only requests due while a run was
in progress count for the second row.

Both servers run the same way (uvicorn, one process, access log off) in a process of their own; the load
generator is open-loop: request i is due at i/rate seconds and its latency counts from when it was due, so
a stalled server cannot hide its queue (no coordinated omission). Every card request carries a fresh v3
signature, made before the clock starts. A closed-loop phase (32 connections, as fast as possible) then
measures the most requests/s each server sustains.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from accoil_sync.card.signature import sign_v3
from bench.emulated import free_port, server_process

SECRET = "bench-client-secret"
TRIGGER_TOKEN = "bench-trigger-token"
Request = tuple[str, dict[str, str]]  # (path and query, headers)

BARE = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def constant(request):
    return Response(b'{"results": []}', media_type="application/json")

async def healthz(request):
    return Response(b"ok")

app = Starlette(routes=[Route("/card/app", constant, methods=["GET", "POST"]), Route("/healthz", healthz)])
"""


# The server as it was before syncs moved to a child process: the same app, the sync on the server's loop.
IN_PROCESS = """
import sys
from pathlib import Path

import uvicorn

from accoil_sync import logs
from accoil_sync.config.settings import load_settings
from accoil_sync.serve.app import create_app
from accoil_sync.serve.scheduler import Scheduler

settings = load_settings(Path(sys.argv[1]))
logs.setup("WARNING", "json")
app = create_app(settings, Scheduler(settings))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning", access_log=False)
"""


def populate(workdir: Path, objects: int) -> Path:
    users = workdir / "users.csv"
    with users.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "user_id",
                "email",
                "score_name",
                "score",
                "segments",
                "activation",
                "adoption_recent",
                "adoption_ever",
                "last_active",
                "frequency",
            ]
        )
        for i in range(objects):
            w.writerow(
                [
                    f"u{i}",
                    f"user{i}@example.com",
                    "Default",
                    i % 101,
                    "Engaged;Power Users",
                    50,
                    40.5,
                    60,
                    "2026-11-20T10:00:00Z",
                    i % 8,
                ]
            )
    config = workdir / "accoil-sync.toml"
    config.write_text(
        f'[source]\nusers = "{users}"\n[state]\npath = "{workdir / "state.db"}"\n'
        '[destinations.card]\nenabled = true\n[serve]\npublic_url = "http://127.0.0.1"\n'
    )
    env = {**os.environ, "ACCOIL_SYNC_SERVE__HUBSPOT_CLIENT_SECRET": SECRET}
    started = time.perf_counter()
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "accoil_sync", "sync", "-c", str(config)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    print(f"state: {objects:,} users synced into the card store in {time.perf_counter() - started:.1f}s")
    return config


def requests(public: str, objects: int, count: int) -> list[Request]:
    rng = random.Random(7)
    out = []
    stamp = str(int(time.time() * 1000) + 30_000)  # valid for the whole run (5 min window, 60 s skew)
    for _ in range(count):
        n = rng.randrange(int(objects * 1.1))  # ~9% unknown objects
        path = f"/card/app?associatedObjectType=CONTACT&associatedObjectId={n}&email=user{n}@example.com"
        headers = {
            "X-HubSpot-Signature-v3": sign_v3(SECRET, "GET", public + path, b"", stamp),
            "X-HubSpot-Request-Timestamp": stamp,
        }
        out.append((path, headers))
    return out


class Connection:
    """A bare HTTP/1.1 keep-alive connection: httpx's async pool, not the server, caps out near 200 req/s
    with 32 concurrent requests here, so the load generator speaks the protocol itself."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\n{head}\r\n".encode())
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        return int(status_line.split()[1]), body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def open_loop(
    base: str, reqs: list[Request], rate: float, connections: int = 32, dues: list[float] | None = None
) -> tuple[list[float], int, int]:
    """Request i is due at i/rate; a free connection takes it; latency counts from when it was due.
    ``dues`` (if given) receives each latency's due time, in the same order."""
    host, port = base.removeprefix("http://").split(":")
    queue: asyncio.Queue[tuple[float, Request] | None] = asyncio.Queue()
    latencies: list[float] = []
    errors = found = 0

    async def worker() -> None:
        nonlocal errors, found
        conn = Connection(host, int(port))
        while (item := await queue.get()) is not None:
            due, (target, headers) = item
            status, body = await conn.get(target, headers)
            latencies.append(time.perf_counter() - due)
            if dues is not None:
                dues.append(due)
            errors += status != 200
            found += b'"found":true' in body
        await conn.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    t0 = time.perf_counter() + 0.1
    for i, req in enumerate(reqs):
        due = t0 + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        queue.put_nowait((due, req))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return latencies, errors, found


async def closed_loop(base: str, reqs: list[Request], seconds: float, connections: int = 32) -> float:
    host, port = base.removeprefix("http://").split(":")
    done = 0
    end = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal done
        conn = Connection(host, int(port))
        i = offset
        while time.perf_counter() < end:
            target, headers = reqs[i % len(reqs)]
            await conn.get(target, headers)
            done += 1
            i += connections
        await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(connections)))
    return done / (time.perf_counter() - started)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1] * 1000


def measure(
    name: str, args: list[str], env: dict[str, str], objects: int, rate: float, seconds: float
) -> dict[str, float]:
    port = free_port()
    with server_process([*args, "--port", str(port)], port, env) as url:
        reqs = requests("http://127.0.0.1", objects, int(rate * seconds))
        asyncio.run(open_loop(url, reqs[:300], 100))  # warm-up: connections, page cache, first imports
        latencies, errors, found = asyncio.run(open_loop(url, reqs, rate))
        throughput = asyncio.run(closed_loop(url, reqs, min(10.0, seconds)))
    row = {
        "p50_ms": pct(latencies, 50),
        "p99_ms": pct(latencies, 99),
        "max_ms": max(latencies) * 1000,
        "errors": errors,
        "found": found / len(latencies),
        "max_rps": throughput,
    }
    print(
        f"{name:5} p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  max {row['max_ms']:.1f} ms  "
        f"errors {errors}  found {found / len(latencies):.0%}  closed-loop {throughput:,.0f} req/s"
    )
    return row


async def syncs_back_to_back(base: str, stop: asyncio.Event) -> list[tuple[float, float, str]]:
    """Trigger a sync, wait for it to end, trigger the next, until ``stop``; (start, end, status) each."""
    import httpx

    runs = []
    auth = {"Authorization": f"Bearer {TRIGGER_TOKEN}"}
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            answer = await client.post("/syncs/trigger")
            if answer.status_code != 202:
                await asyncio.sleep(0.05)
                continue
            run_id = answer.json()["run_id"]
            status = "starting"
            while status in ("starting", "running"):
                await asyncio.sleep(0.25)  # a monitor's poll, not load of its own
                status = (await client.get(f"/syncs/{run_id}")).json().get("status", "starting")
            runs.append((started, time.perf_counter(), status))
    return runs


def measure_during_sync(
    config: Path, env: dict[str, str], objects: int, rate: float, seconds: float, script: Path | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """``script``: run that server (given the config) instead of ``accoil-sync serve``."""
    port = free_port()
    args = ["-m", "accoil_sync", "serve", "-c", str(config), "--log-level", "WARNING"]
    if script is not None:
        args = [str(script), str(config)]
    args += ["--port", str(port)]
    with server_process(args, port, {**env, "ACCOIL_SYNC_SERVE__TRIGGER_TOKEN": TRIGGER_TOKEN}) as url:
        reqs = requests("http://127.0.0.1", objects, int(rate * seconds))
        asyncio.run(open_loop(url, reqs[:300], 100))  # warm-up
        idle, idle_errors, _ = asyncio.run(open_loop(url, reqs, rate))

        async def loaded() -> tuple[list[float], list[float], int, list[tuple[float, float, str]]]:
            stop = asyncio.Event()
            syncing = asyncio.create_task(syncs_back_to_back(url, stop))
            await asyncio.sleep(2.0)  # the first child is up and planning before the clock starts
            dues: list[float] = []
            latencies, errors, _ = await open_loop(url, reqs, rate, dues=dues)
            stop.set()
            return latencies, dues, errors, await syncing

        latencies, dues, errors, runs = asyncio.run(loaded())
    during = [lat for lat, due in zip(latencies, dues, strict=True) if any(a <= due <= b for a, b, _ in runs)]
    rows = []
    for name, values, errs in (("idle", idle, idle_errors), ("sync", during, errors)):
        row = {"p50_ms": pct(values, 50), "p99_ms": pct(values, 99), "max_ms": max(values) * 1000}
        row.update(requests=len(values), errors=errs)
        rows.append(row)
        print(
            f"{name:5} {len(values):,} requests  p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  "
            f"max {row['max_ms']:.1f} ms  errors {errs}"
        )
    spans = [b - a for a, b, _ in runs]
    print(
        f"syncs: {len(runs)} back to back, {statistics.median(spans):.1f} s median (spawn + re-plan of "
        f"{objects:,} users), statuses {sorted({s for _, _, s in runs})}"
    )
    return rows[0], rows[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--during-sync", action="store_true", help="idle vs while re-plans run")
    parser.add_argument(
        "--compare-in-process",
        action="store_true",
        help="with --during-sync: also the sync on the server's loop",
    )
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config = populate(workdir, a.objects)
        env = {**os.environ, "ACCOIL_SYNC_SERVE__HUBSPOT_CLIENT_SECRET": SECRET}
        if a.during_sync:
            print(f"open loop at {a.rate:.0f} req/s for {a.seconds:.0f}s, idle then during syncs")
            print("-- serve (syncs in a child process)")
            measure_during_sync(config, env, a.objects, a.rate, a.seconds)
            if a.compare_in_process:
                script = workdir / "in_process_serve.py"
                script.write_text(IN_PROCESS)
                print("-- the same app with the sync on the server's event loop (before)")
                measure_during_sync(config, env, a.objects, a.rate, a.seconds, script)
            return
        bare_module = workdir / "bare_app.py"
        bare_module.write_text(BARE)
        print(
            f"open loop at {a.rate:.0f} req/s for {a.seconds:.0f}s ({int(a.rate * a.seconds):,} requests each)"
        )
        card = measure(
            "card",
            ["-m", "accoil_sync", "serve", "-c", str(config), "--no-scheduler", "--log-level", "WARNING"],
            env,
            a.objects,
            a.rate,
            a.seconds,
        )
        bare = measure(
            "bare",
            [
                "-m",
                "uvicorn",
                "--app-dir",
                str(workdir),
                "bare_app:app",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env,
            a.objects,
            a.rate,
            a.seconds,
        )
        print(
            f"ratio card/bare: p50 {card['p50_ms'] / bare['p50_ms']:.2f}x  p99 {card['p99_ms'] / bare['p99_ms']:.2f}x"
            f"  throughput {bare['max_rps'] / card['max_rps']:.2f}x fewer req/s"
        )


if __name__ == "__main__":
    main()
