"""Evaluates a one-pass rollup per (user, account, event) against the bench's baseline (issue 18, not the
shipped design): the day-grained aggregate the rollup builds today, one pass with window counts and an
active-day bitmask, a sparse and a fixed-length list of the last 60 daily counts, metrics over the one-pass
rows, and an incremental day (the new day plus the days leaving the windows) checked against a direct pass.

    python bench/score_rollup_eval.py /tmp/bench/events-63000x90 [fixed]

The directory is one written by bench/score_bench.py (one Parquet file per day); ``fixed`` also times the
fixed-length list (slow). One process, DuckDB at the scorer's 512 MB limit; results in BENCHMARKS.md.
Windows are the bench profiles' (7 and 30 days); the days leaving them are re-read from the files named for
those days, which holds for the generator's one-file-per-day stream only.
"""

import datetime
import glob
import sys
import tempfile
import time

import duckdb

d = sys.argv[1]
files = sorted(glob.glob(f"{d}/*.parquet"))
new_file, old_files = files[-1], files[:-1]
con = duckdb.connect()
con.sql("SET TimeZone='UTC'")
con.sql("SET memory_limit='512MB'")
con.sql("SET preserve_insertion_order=false")
con.sql(f"SET temp_directory='{tempfile.mkdtemp()}'")


def q(name, sql, reps=1):
    best = 1e9
    for _ in range(reps):
        s = time.perf_counter()
        r = con.sql(sql).fetchall()
        best = min(best, time.perf_counter() - s)
    print(f"{name:52s} {best:6.2f}s  {str(r[0])[:60] if r else ''}", flush=True)
    return best


src = f"read_parquet({old_files})"
D = con.sql(f"SELECT max(CAST(timestamp AS DATE)) FROM {src}").fetchall()[0][0]
res = {}
res["base"] = q(
    "baseline GROUP BY user, event (bench's)",
    f"SELECT count(*) FROM (SELECT user_id, event, count(*) FROM {src} GROUP BY ALL)",
    2,
)
base = f"(SELECT user_id, account_id, event, timestamp AS ts, CAST(timestamp AS DATE) AS day, DATE '{D}' - CAST(timestamp AS DATE) AS dd FROM {src})"
res["daily"] = q(
    "day-grained aggregate (current rollup), kept",
    f"CREATE OR REPLACE TEMP TABLE daily AS SELECT day, user_id, account_id, event, count(*) n, max(ts) last_ts FROM {base} GROUP BY ALL",
)
res["daily_n"] = con.sql("SELECT count(*) FROM daily").fetchall()[0][0]
one = f"""SELECT user_id, account_id, event, count(*)::BIGINT n, min(day) first_day, max(ts) last_ts,
  count(*) FILTER (WHERE dd < 7) w7, count(*) FILTER (WHERE dd BETWEEN 7 AND 13) p7,
  count(*) FILTER (WHERE dd < 30) w30, count(*) FILTER (WHERE dd BETWEEN 30 AND 59) p30,
  coalesce(bit_or(CASE WHEN dd < 60 THEN CAST(1 AS BIGINT) << CAST(dd AS INTEGER) END), 0) AS mask
  FROM {base} GROUP BY ALL"""
res["one"] = q("one pass: window sums + active-day mask, kept", f"CREATE OR REPLACE TEMP TABLE c AS {one}")
res["one_n"] = con.sql("SELECT count(*) FROM c").fetchall()[0][0]
sparse = f"""SELECT user_id, account_id, event, sum(k)::BIGINT n, min(day) first_day, max(last_ts) last_ts,
   list({{'dd': dd, 'k': k}}) FILTER (WHERE dd < 60) AS days FROM (
  SELECT user_id, account_id, event, day, dd, count(*) k, max(ts) last_ts FROM {base} GROUP BY ALL) GROUP BY ALL"""
res["sparse"] = q(
    "two-stage: sparse list of the last 60 daily counts, kept", f"CREATE OR REPLACE TEMP TABLE sl AS {sparse}"
)
cnts = ", ".join(f"count(*) FILTER (WHERE dd = {k})::INTEGER" for k in range(60))
fixed = f"SELECT user_id, account_id, event, count(*) n, min(day) first_day, max(ts) last_ts, [{cnts}] AS days FROM {base} GROUP BY ALL"
if len(sys.argv) > 2:
    res["fixed"] = q(
        "one pass: fixed list of 60 daily counts, kept", f"CREATE OR REPLACE TEMP TABLE fl AS {fixed}"
    )
# Metrics from the one-pass rows, for the bench's two profiles (a close approximation of metrics.py).
W = {7: ("w7", "p7", 0x7F), 30: ("w30", "p30", (1 << 30) - 1)}
weights = {
    7: {
        "Project Created": 9,
        "Report Viewed": 3,
        "Dashboard Viewed": 2,
        "Export Downloaded": 5,
        "Comment Added": 6,
        "Teammate Invited": 6,
    },
    30: {"Project Created": 9, "Report Viewed": 3, "Search Performed": 1},
}


def metrics(tag):
    total = 0
    for win, (now, before, mask) in W.items():
        vals = ", ".join(f"('{e}', {w}, {1 << i})" for i, (e, w) in enumerate(weights[win].items()))
        total += q(
            f"  metrics {win}-day profile ({tag})",
            f"""
        CREATE OR REPLACE TEMP TABLE su AS
        WITH w(event, weight, bit) AS (VALUES {vals}),
        u AS (SELECT user_id, min(first_day) first_seen, max(last_ts) last_active,
                 max_by(account_id, last_ts) account_id,
                 sum({now} * coalesce(weight, 0)) raw, sum({before} * coalesce(weight, 0)) raw_before,
                 bit_count(bit_or(CASE WHEN weight IS NOT NULL THEN mask & {mask} END)) frequency,
                 bit_count(bit_or(bit) FILTER (WHERE {now} > 0)) units, bit_count(bit_or(bit)) ever,
                 (coalesce(sum(n) FILTER (WHERE event = 'Project Created'), 0) > 0)::INT AS met
              FROM c LEFT JOIN w USING (event) GROUP BY user_id),
        a AS (SELECT quantile_cont(raw, 0.9) FILTER (WHERE raw > 0) p, quantile_cont(raw_before, 0.9) FILTER (WHERE raw_before > 0) pb FROM u)
        SELECT u.*, CASE WHEN raw > 0 THEN greatest(1, round(100 * least(raw, p) / p)) ELSE 0 END score,
               CASE WHEN raw_before > 0 THEN greatest(1, round(100 * least(raw_before, pb) / pb)) ELSE 0 END prev
        FROM u, a""",
        )
        total += q(
            f"  accounts {win}-day profile ({tag})",
            f"""
        CREATE OR REPLACE TEMP TABLE sa AS
        WITH w(event, weight, bit) AS (VALUES {vals}),
        x AS (SELECT account_id, max(last_ts) last_active, min(first_day) first_seen,
                 bit_count(bit_or(CASE WHEN weight IS NOT NULL THEN mask & {mask} END)) frequency,
                 count(DISTINCT user_id) FILTER (WHERE {now} > 0 AND weight IS NOT NULL) active_users,
                 bit_count(bit_or(bit) FILTER (WHERE {now} > 0)) units
              FROM c LEFT JOIN w USING (event) WHERE account_id IS NOT NULL GROUP BY account_id),
        m AS (SELECT mm.account_id, count(*) AS total, round(avg(coalesce(s.score, 0))) score FROM
               (SELECT account_id, user_id FROM c WHERE account_id IS NOT NULL GROUP BY ALL
                HAVING max(last_ts) >= TIMESTAMPTZ '{D}' - INTERVAL 89 DAY) mm
               LEFT JOIN su s USING (user_id) GROUP BY mm.account_id)
        SELECT * FROM x LEFT JOIN m USING (account_id)""",
        )
    return total


res["metrics_one"] = metrics("one pass")
print({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()})
b = res["base"]
print(
    f"one pass + metrics: {res['one'] + res['metrics_one']:.2f}s = {(res['one'] + res['metrics_one']) / b:.1f}x baseline; "
    f"one pass alone {res['one'] / b:.1f}x; day-grained alone {res['daily'] / b:.1f}x; sparse list {res['sparse'] / b:.1f}x"
)
# Incremental day in the one-pass design: shift by one day = re-read the new day and the days leaving the
# windows (offsets 6, 13, 29, 59 of the old as-of), merge into c.
D1 = D + datetime.timedelta(days=1)
leaving = [D - datetime.timedelta(days=k) for k in (6, 13, 29, 59)]
lf = [f for f in old_files if any(str(x) in f for x in leaving)] + [new_file]
t0 = time.perf_counter()
q(
    "incr: aggregate new day + 4 leaving days' files",
    f"""CREATE OR REPLACE TEMP TABLE delta AS
 SELECT user_id, account_id, event,
  count(*) FILTER (WHERE dd = 0) AS n_new, min(day) FILTER (WHERE dd = 0) first_new, max(ts) FILTER (WHERE dd = 0) last_new,
  count(*) FILTER (WHERE dd = 0) - count(*) FILTER (WHERE dd = 7) AS dw7,
  count(*) FILTER (WHERE dd = 7) - count(*) FILTER (WHERE dd = 14) AS dp7,
  count(*) FILTER (WHERE dd = 0) - count(*) FILTER (WHERE dd = 30) AS dw30,
  count(*) FILTER (WHERE dd = 30) - count(*) FILTER (WHERE dd = 60) AS dp30
 FROM (SELECT user_id, account_id, event, timestamp AS ts, CAST(timestamp AS DATE) AS day, DATE '{D1}' - CAST(timestamp AS DATE) AS dd FROM read_parquet({lf})) GROUP BY ALL""",
)
q(
    "incr: merge (shift masks, add deltas) into c",
    f"""CREATE OR REPLACE TEMP TABLE c AS
 SELECT coalesce(c.user_id, d.user_id) user_id, coalesce(c.account_id, d.account_id) account_id, coalesce(c.event, d.event) event,
  coalesce(c.n, 0) + coalesce(d.n_new, 0) n, least(c.first_day, d.first_new) first_day, greatest(c.last_ts, d.last_new) last_ts,
  coalesce(c.w7, 0) + coalesce(d.dw7, 0) w7, coalesce(c.p7, 0) + coalesce(d.dp7, 0) p7,
  coalesce(c.w30, 0) + coalesce(d.dw30, 0) w30, coalesce(c.p30, 0) + coalesce(d.dp30, 0) p30,
  ((coalesce(c.mask, 0) << 1) & {(1 << 60) - 1}) | CASE WHEN d.n_new > 0 THEN 1 ELSE 0 END mask
 FROM c FULL JOIN delta d ON c.user_id = d.user_id AND c.event = d.event AND coalesce(c.account_id, '') = coalesce(d.account_id, '')""",
)
inc_ingest = time.perf_counter() - t0
inc_metrics = metrics("incremental")
full = res["one"] + res["metrics_one"]
print(
    f"incremental: ingest {inc_ingest:.2f}s + metrics {inc_metrics:.2f}s = {inc_ingest + inc_metrics:.2f}s = {(inc_ingest + inc_metrics) / full:.2f}x the one-pass full score"
)

# Check: the merged rows equal a one pass over every file as of the new day.
all_src = f"read_parquet({files})"
direct = one.replace(src, all_src).replace(f"DATE '{D}'", f"DATE '{D1}'")
con.sql(f"CREATE OR REPLACE TEMP TABLE c2 AS {direct}")
diff = con.sql(
    "SELECT count(*) FROM (SELECT * FROM c EXCEPT SELECT * FROM c2 UNION ALL SELECT * FROM c2 EXCEPT SELECT * FROM c)"
).fetchall()[0][0]
print("incremental rows differing from a direct one pass:", diff)
