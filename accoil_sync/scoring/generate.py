"""Synthetic product event streams for the tests, the demo and the benchmark.

Realistic enough to exercise every metric: user activity follows a power law (Pareto, mean 1, a few heavy
users), accounts have very different sizes, weekends are quiet, some users churn (stop for good) and some
sign up during the period. Generated inside DuckDB with hash-derived randomness, so the same arguments give
the same events on any machine and thread count, and memory stays flat whatever the size.

    python -m accoil_sync.scoring.generate --users 2000 --days 90 --out events/ --with-email --accounts accounts.csv
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from accoil_sync.scoring.db import connect, do

# name, relative popularity; "Page Viewed" and "Login" are deliberately not in the example weights.
CATALOGUE: tuple[tuple[str, float], ...] = (
    ("Page Viewed", 30),
    ("Login", 10),
    ("Report Viewed", 14),
    ("Dashboard Viewed", 12),
    ("Search Performed", 8),
    ("Comment Added", 6),
    ("Project Created", 3),
    ("Export Downloaded", 3),
    ("Teammate Invited", 1.5),
    ("Alert Configured", 1.5),
    ("Integration Connected", 0.7),
    ("Settings Changed", 1),
)


@dataclass(frozen=True, slots=True)
class StreamSpec:
    users: int = 1000
    days: int = 90
    end: date = date(2026, 11, 30)
    events_per_active_day: float = 6.0
    seed: int = 1
    churn_share: float = 0.2
    new_share: float = 0.3
    with_email: bool = False  # an ``email`` column, as Segment's context.traits.email would give

    @property
    def start(self) -> date:
        return self.end - timedelta(days=self.days - 1)


def _uniform(*parts: str) -> str:
    """A deterministic uniform number in [0, 1) from the hash of ``parts``."""
    return f"(hash({', '.join(parts)}) % 1000000007) / 1000000007.0"


def _event_name(u: str) -> str:
    total = sum(weight for _, weight in CATALOGUE)
    cases, cumulative = [], 0.0
    for name, weight in CATALOGUE[:-1]:
        cumulative += weight / total
        cases.append(f"WHEN {u} < {cumulative:.6f} THEN '{name}'")
    return f"CASE {' '.join(cases)} ELSE '{CATALOGUE[-1][0]}' END"


def day_sql(spec: StreamSpec, day: date) -> str:
    """The events of one day: user_id, account_id, event, timestamp."""
    s, d = spec.seed, (day - spec.start).days
    season = f"CASE dayofweek(DATE '{day.isoformat()}') WHEN 0 THEN 0.3 WHEN 6 THEN 0.35 ELSE 1.0 END"
    return f"""
    WITH people AS (
      SELECT i,
             least(20.0, 0.5 / sqrt(1 - {_uniform(str(s), "'rate'", "i")})) AS rate,
             CASE WHEN {_uniform(str(s), "'new'", "i")} < {spec.new_share}
                  THEN floor({_uniform(str(s), "'start'", "i")} * {spec.days}) ELSE 0 END AS start_day,
             CASE WHEN {_uniform(str(s), "'churn'", "i")} < {spec.churn_share}
                  THEN floor({_uniform(str(s), "'end'", "i")} * {spec.days} * 1.2) ELSE 1e9 END AS end_day,
             'acc_' || CAST(floor({spec.users} / 6 * pow({_uniform(str(s), "'acct'", "i")}, 2.5)) AS BIGINT)
               AS account_id
      FROM range({spec.users}) t(i)),
    today AS (
      SELECT i, rate, account_id,
             1 + CAST(floor(-ln(1 - {_uniform(str(s), "'n'", "i", str(d))}) * {spec.events_per_active_day}
                            * sqrt(rate)) AS BIGINT) AS n
      FROM people
      WHERE {d} >= start_day AND {d} < greatest(start_day + 1, end_day)
        AND {_uniform(str(s), "'active'", "i", str(d))} < least(0.95, 0.45 * rate * {season})),
    events AS (SELECT i, account_id, unnest(range(n)) AS k FROM today)
    SELECT 'user_' || i AS user_id, account_id,{" 'user_' || i || '@example.com' AS email," if spec.with_email else ""}
           {_event_name(_uniform(str(s), "'event'", "i", str(d), "k"))} AS event,
           TIMESTAMPTZ '{day.isoformat()} 00:00:00+00'
             + to_microseconds(CAST({_uniform(str(s), "'ts'", "i", str(d), "k")} * 86399000000 AS BIGINT))
             AS "timestamp"
    FROM events
    """


def write_stream(spec: StreamSpec, out: Path, fmt: str = "parquet", days: list[date] | None = None) -> int:
    """One file per day (``events-YYYY-MM-DD.<fmt>``) in ``out``; returns the number of events written."""
    out.mkdir(parents=True, exist_ok=True)
    con = connect("512MB", out / ".duckdb-tmp")
    total = 0
    try:
        for offset in range(spec.days):
            day = spec.start + timedelta(days=offset)
            if days is not None and day not in days:
                continue
            path = out / f"events-{day.isoformat()}.{fmt}"
            options = {"parquet": "FORMAT parquet", "csv": "FORMAT csv, HEADER true", "jsonl": "FORMAT json"}[
                fmt
            ]
            do(con, f"COPY ({day_sql(spec, day)}) TO '{path}' ({options})")
            total += int(
                do(
                    con,
                    f"SELECT count(*) FROM read_{'csv' if fmt == 'csv' else fmt}('{path}')".replace(
                        "read_jsonl", "read_json"
                    ),
                )[0][0]
            )
    finally:
        con.close()
    return total


def write_accounts(spec: StreamSpec, path: Path) -> int:
    """The stream's accounts with a name and a domain (``account_id,name,domain``, CSV): what a CRM export
    or Segment's ``groups`` traits give, for ``source.accounts``. Returns the number of accounts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = spec.users // 6 + 1  # day_sql's account ids are acc_0 .. acc_{users // 6}
    with path.open("w", encoding="utf-8") as fh:
        fh.write("account_id,name,domain\n")
        for n in range(count):
            fh.write(f"acc_{n},Company {n},company{n}.example\n")
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic product event stream, one file per day.")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--end", type=date.fromisoformat, default=date(2026, 11, 30), help="last day (UTC)")
    parser.add_argument("--events-per-active-day", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--format", choices=("parquet", "csv", "jsonl"), default="parquet")
    parser.add_argument(
        "--with-email",
        action="store_true",
        help="an email column (user_N@example.com), as examples/events.toml maps",
    )
    parser.add_argument("--accounts", type=Path, help="also write the accounts' name and domain to this CSV")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    spec = StreamSpec(
        args.users, args.days, args.end, args.events_per_active_day, args.seed, with_email=args.with_email
    )
    n = write_stream(spec, args.out, args.format)
    print(f"{n} events, {spec.users} users, {spec.start}..{spec.end}, in {args.out}")
    if args.accounts:
        print(f"{write_accounts(spec, args.accounts)} accounts' name and domain in {args.accounts}")


if __name__ == "__main__":
    main()
