"""Plan/sync benchmark: N users (and N/10 accounts) through accoil-sync, against DuckDB alone reading the file.

    python bench/plan_bench.py --users 1000000

Phases, each in its own process so peak RSS is its own: generate the CSV, DuckDB reading it (to Arrow, and
to Python rows), the first plan, a full sync to the jsonl destination, and an unchanged re-plan.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEGMENTS = ["Most Engaged", "Engaged", "At Risk", "Dormant", "Power Users", "Champions"]


def generate(directory: Path, users: int) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute(f"""
        COPY (
          SELECT 'u_' || lpad(i::VARCHAR, 8, '0') AS user_id,
                 'user' || i || '@example.com' AS email,
                 'acc_' || (i % {max(users // 10, 1)}) AS account_id,
                 'Default' AS score_name,
                 (hash(i) % 101)::INT AS score,
                 list_element({SEGMENTS!r}, (hash(i * 7) % 6 + 1)::INT) AS segments,
                 round((hash(i * 3) % 10001) / 100.0, 2) AS activation,
                 round((hash(i * 5) % 10001) / 100.0, 2) AS adoption_recent,
                 round((hash(i * 11) % 10001) / 100.0, 2) AS adoption_ever,
                 strftime(TIMESTAMP '2026-11-01' + to_seconds((hash(i) % 1000000)::BIGINT), '%Y-%m-%dT%H:%M:%SZ')
                   AS last_active,
                 (hash(i * 13) % 8)::INT AS frequency
          FROM range({users}) t(i)
        ) TO '{directory / "users.csv"}' (HEADER)
    """).fetchall()
    accounts = max(users // 10, 1)
    con.execute(f"""
        COPY (
          SELECT 'acc_' || i AS account_id, 'Account ' || i AS name, 'acc' || i || '.example.com' AS domain,
                 (hash(i) % 101)::INT AS score, 'Engaged' AS segments, 50 AS activation, 40 AS adoption_recent,
                 60 AS adoption_ever, '2026-11-20T00:00:00Z' AS last_active, 5 AS frequency,
                 (hash(i) % 10)::INT AS active_users, 10 AS total_users
          FROM range({accounts}) t(i)
        ) TO '{directory / "accounts.csv"}' (HEADER)
    """).fetchall()
    (directory / "accoil-sync.toml").write_text(
        '[source]\nusers = "users.csv"\naccounts = "accounts.csv"\n'
        '[state]\npath = "state/state.db"\nsynclog_retention_days = 0\n'
        '[destinations.jsonl]\nenabled = true\npath = "out/deliveries.jsonl"\nbatch_size = 5000\n'
    )


def phase(name: str, directory: Path) -> dict[str, float]:
    os.chdir(directory)
    start = time.perf_counter()
    extra: dict[str, float] = {}
    if name.startswith("duckdb"):
        import duckdb

        con = duckdb.connect()
        for file in ("users.csv", "accounts.csv"):
            rel = con.sql(f"SELECT * FROM read_csv('{file}')")
            rows = rel.to_arrow_table().num_rows if name == "duckdb-arrow" else len(rel.fetchall())
            extra[file] = rows
    else:
        from accoil_sync.config.settings import load_settings
        from accoil_sync.sync.runner import execute

        settings = load_settings(Path("accoil-sync.toml"))
        result = asyncio.run(execute(settings, deliver=name == "sync"))
        writes = sum(p.writes for p in result.plans.values())
        extra["planned_writes"] = writes
        extra["delivered"] = sum(d.counts["ok"] for d in result.deliveries.values())
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb, 1), **extra}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--phase")
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.dir)))
        return
    with tempfile.TemporaryDirectory(prefix="accoil-bench-") as tmp:
        directory = Path(tmp)
        t0 = time.perf_counter()
        generate(directory, args.users)
        print(
            f"generated {args.users:,} users and {max(args.users // 10, 1):,} accounts "
            f"in {time.perf_counter() - t0:.1f}s ({(directory / 'users.csv').stat().st_size / 1e6:.0f} MB CSV)"
        )
        results = {}
        for name in ("duckdb-arrow", "duckdb-rows", "first-plan", "sync", "unchanged-replan"):
            out = subprocess.run(
                [sys.executable, __file__, "--phase", name, "--dir", str(directory)],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode:
                raise SystemExit(f"phase {name} failed:\n{out.stderr[-3000:]}")
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{name:>18}: {results[name]}")
        replan = results["unchanged-replan"]["seconds"]
        print(
            f"unchanged re-plan / DuckDB read to Arrow: {replan / results['duckdb-arrow']['seconds']:.1f}x; "
            f"/ DuckDB read to Python rows: {replan / results['duckdb-rows']['seconds']:.2f}x"
        )
        assert results["unchanged-replan"]["planned_writes"] == 0, "an unchanged re-plan must plan no writes"


if __name__ == "__main__":
    main()
