"""Scoring benchmark: a generated event stream scored in full and then for one new day, each compared with a
bare DuckDB ``GROUP BY user_id, event`` over the same files in the same run.

    python bench/score_bench.py --users 60000 --days 90      # about 10M events

Each phase runs in its own process, so the peak RSS printed is that phase's own (ru_maxrss):
- baseline: DuckDB alone, default settings, ``SELECT user_id, event, count(*) ... GROUP BY ALL`` over every
  file but the last day's;
- full: a fresh rollup built from the same files and every metric computed, rows read out as the stage
  reads them; then, timed apart, the rows read again with each object's explanation, as a sync that
  includes the card destination reads them;
- incremental: the last day's file added, the rollup brought up to date and every metric computed again;
- baseline (all days): the GROUP BY over every file, for the incremental phase's input.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = """
[source]
kind = "events"
events = "{events}/*.parquet"
[state]
path = "{state}/state.db"
[[profiles]]
name = "Default"
window_days = 7
[profiles.scoring]
weights = {{ "Project Created" = 9, "Report Viewed" = 3, "Dashboard Viewed" = 2, "Export Downloaded" = 5 }}
activation = ["Project Created", "Teammate Invited", "Integration Connected"]
[profiles.scoring.features.Collaboration]
weight = 6
events = ["Comment Added", "Teammate Invited"]
[[profiles]]
name = "Monthly"
window_days = 30
[profiles.scoring]
weights = {{ "Project Created" = 9, "Report Viewed" = 3, "Search Performed" = 1 }}
[destinations.jsonl]
enabled = true
"""


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_baseline(files: list[str]) -> dict[str, float]:
    import duckdb

    start = time.perf_counter()
    con = duckdb.connect()
    listed = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    groups = con.sql(
        f"SELECT count(*) FROM (SELECT user_id, event, count(*) FROM read_parquet({listed}) GROUP BY ALL)"
    ).fetchall()[0][0]
    return {"seconds": time.perf_counter() - start, "peak_mb": peak_mb(), "groups": groups}


def phase_score(config: str, as_of: str) -> dict[str, float]:
    from accoil_sync.config.settings import load_settings
    from accoil_sync.scoring import Scorer
    from accoil_sync.traits.names import ObjectKind

    settings = load_settings(Path(config))
    start = time.perf_counter()
    rows = 0
    with Scorer(settings.source, settings.profiles, settings.state.directory) as scorer:
        scorer.run(date.fromisoformat(as_of))
        for kind in ObjectKind:
            rows += sum(chunk.table.num_rows for chunk in scorer.chunks(kind))
        scored = time.perf_counter()
        # A sync that includes the card destination reads every row with its explanation instead.
        for kind in ObjectKind:
            sum(chunk.table.num_rows for chunk in scorer.chunks(kind, explain=True))
        report = scorer.report
    explained = time.perf_counter()
    return {
        "seconds": scored - start,
        "explain_seconds": explained - scored,  # extra for the card: explanations, rows read with them
        "peak_mb": peak_mb(),
        "metric_rows": rows,
        "events_read": report.rows,
        "mode": report.mode,  # type: ignore[dict-item]
    }


def run_phase(*args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--phase", *args], capture_output=True, text=True, check=False, cwd=ROOT
    )
    if done.returncode != 0:
        raise SystemExit(f"phase {args[0]} failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=60000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--events-per-active-day", type=float, default=6.0)
    parser.add_argument("--dir", type=Path, default=None, help="keep the generated events here (reused)")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, *rest = args.phase
        result = phase_baseline(rest) if name == "baseline" else phase_score(*rest)
        print(json.dumps(result))
        return

    from accoil_sync.scoring.generate import StreamSpec, write_stream

    work = args.dir or Path(tempfile.mkdtemp(prefix="score-bench-"))
    spec = StreamSpec(users=args.users, days=args.days, events_per_active_day=args.events_per_active_day)
    events = work / f"events-{spec.users}x{spec.days}"
    all_days = [spec.start + timedelta(days=i) for i in range(spec.days)]
    if not events.exists():
        started = time.perf_counter()
        total = write_stream(spec, events)
        print(f"generated {total:,} events in {time.perf_counter() - started:.0f} s -> {events}", flush=True)
    incoming = work / "incoming"
    incoming.mkdir(exist_ok=True)
    last = events / f"events-{all_days[-1].isoformat()}.parquet"
    if last.exists():
        last.rename(incoming / last.name)
    state = work / "state"
    subprocess.run(["rm", "-rf", str(state)], check=True)
    config = work / "bench.toml"
    config.write_text(CONFIG.format(events=events, state=state))
    files = sorted(str(p) for p in events.glob("*.parquet"))

    import duckdb

    counted = duckdb.sql(f"SELECT count(*) FROM read_parquet('{events}/*.parquet')").fetchall()[0][0]
    extra = duckdb.sql(f"SELECT count(*) FROM read_parquet('{incoming / last.name}')").fetchall()[0][0]
    print(
        f"{counted:,} events in {len(files)} daily files; {extra:,} more on the incremental day", flush=True
    )

    base = run_phase("baseline", *files)
    full = run_phase("score", str(config), all_days[-2].isoformat())
    (incoming / last.name).rename(last)
    base_all = run_phase("baseline", *files, str(last))
    inc = run_phase("score", str(config), all_days[-1].isoformat())
    report = {
        "events": counted,
        "incremental_day_events": extra,
        "baseline_group_by": base,
        "full_score": full,
        "baseline_group_by_all_days": base_all,
        "incremental_day": inc,
        "full_vs_group_by": round(full["seconds"] / base["seconds"], 2),
        "full_peak_vs_group_by": round(full["peak_mb"] / base["peak_mb"], 2),
        "incremental_vs_full": round(inc["seconds"] / full["seconds"], 3),
        "incremental_vs_group_by": round(inc["seconds"] / base_all["seconds"], 2),
        "incremental_peak_mb": inc["peak_mb"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
