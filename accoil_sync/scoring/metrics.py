"""The metric formulas of docs/SCORING.md, as DuckDB SQL over the rollup (``r.daily``).

For one profile and one as-of day D with window W (days D-W+1 .. D) it builds two tables, ``score_users``
and ``score_accounts`` (rows appended per profile), holding the canonical metric columns the stage reads
(``sources.validate.canonical_columns``) plus what an explanation needs (raw score, the P90 anchor, the
previous score).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import pyarrow as pa

from accoil_sync.config.models import ProfileConfig
from accoil_sync.config.scoring import ScoringConfig, SegmentRule
from accoil_sync.scoring.db import do
from accoil_sync.scoring.segments import (
    LOOKUP_RULES,
    rules_for,
    segment_lookup_sql,
    segment_mask_sql,
    segments_sql,
)


@dataclass(frozen=True, slots=True)
class Window:
    as_of: date
    days: int

    @property
    def first(self) -> date:
        return self.as_of - timedelta(days=self.days - 1)

    def previous(self) -> Window:
        return Window(self.as_of - timedelta(days=self.days), self.days)


def _d(day: date) -> str:
    return f"DATE '{day.isoformat()}'"


def _bitmask(scoring: ScoringConfig) -> bool:
    """Adoption units fit one BIGINT as bits, so "distinct units" is bit_count(bit_or(bit)): DuckDB's
    DISTINCT aggregates cost several times a plain one (measured 2.77 s against 0.45 s at 100M events)."""
    return len(scoring.adoption_units()) <= 62


def _units_of_pair(scoring: ScoringConfig, where: str = "true", w: str = "w", suffix: str = "") -> str:
    """The adoption units a (user, account) pair used (rows of ``w`` matching ``where``; its columns
    ``bit``, ``unit``, ``adopt`` carry ``suffix``): bits, or a list past 62 units."""
    if _bitmask(scoring):
        return f"bit_or({w}.bit{suffix}) FILTER (WHERE {where})"
    return f"list(DISTINCT {w}.unit{suffix}) FILTER (WHERE {w}.adopt{suffix} AND {where})"


def _distinct_units(scoring: ScoringConfig, column: str, where: str = "true") -> str:
    """How many distinct units the pairs' ``column`` (``_units_of_pair``) hold together (pairs matching
    ``where``)."""
    only = f" FILTER (WHERE {where})" if where != "true" else ""
    if _bitmask(scoring):
        return f"coalesce(bit_count(bit_or({column}){only}), 0)"
    return f"coalesce(len(list_distinct(flatten(list({column}){only}))), 0)"


def register_weights(con: duckdb.DuckDBPyConnection, scoring: ScoringConfig, name: str = "w") -> None:
    """``name``: every scored event with its id in the rollup (events never seen have none and are left
    out), unit (feature or itself), weight and whether adoption counts it."""
    weights = scoring.event_weights()
    bit = {unit: 1 << i for i, unit in enumerate(scoring.adoption_units())} if _bitmask(scoring) else {}
    table = pa.table(
        {
            "event": [e for e, _, _ in weights],
            "unit": [u for _, u, _ in weights],
            "weight": pa.array([w for _, _, w in weights], pa.int64()),
            "adopt": [u in set(scoring.adoption_units()) for _, u, _ in weights],
            "bit": pa.array([bit.get(u, 0) for _, u, _ in weights], pa.int64()),
        }
    )
    con.register("w_arrow", table)
    do(
        con,
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT e.eid, a.* FROM w_arrow a JOIN r.events e USING (event)",
    )
    con.unregister("w_arrow")


def event_ids(con: duckdb.DuckDBPyConnection, events: list[str]) -> dict[str, int]:
    """The rollup's id of each of ``events`` that was ever seen."""
    if not events:
        return {}
    rows = do(con, "SELECT event, eid FROM r.events WHERE list_contains(?, event)", [events])
    return {str(e): int(i) for e, i in rows}


def recent_table(con: duckdb.DuckDBPyConnection, as_of: date, longest_window: int) -> None:
    """``recent``: the daily rows of every profile's window and previous window. A view, not a copy: the
    rollup is written in day order, so DuckDB's per-row-group min/max skips the older days."""
    first = as_of - timedelta(days=2 * longest_window - 1)
    do(
        con,
        f"CREATE OR REPLACE TEMP VIEW recent AS SELECT day, uid, aid, eid, n, last_ts FROM r.daily "
        f"WHERE day BETWEEN {_d(first)} AND {_d(as_of)}",
    )


def _window_pairs(con: duckdb.DuckDBPyConnection, scoring: ScoringConfig, now: Window, suffix: str) -> None:
    """``wp``: the profile's window facts per (user, account) pair, which every per-user and per-account
    figure below combines (one scan of the window and the previous window instead of one per figure and
    kind): raw points in the window and in the previous one, active days of the window as bits (W <= 30),
    adoption units of the window. The weights are ``w<suffix>``, registered by ``lifetime_pairs``."""
    before = now.previous()
    inside = f"d.day >= {_d(now.first)}"
    do(
        con,
        f"""
        CREATE OR REPLACE TEMP TABLE wp{suffix} AS
        SELECT d.uid, d.aid,
               sum(d.n * w.weight) FILTER (WHERE {inside}) AS raw_now,
               sum(d.n * w.weight) FILTER (WHERE NOT {inside}) AS raw_before,
               bit_or(CAST(1 AS BIGINT) << CAST({_d(now.as_of)} - d.day AS INTEGER)) FILTER (WHERE {inside})
                 AS days,
               {_units_of_pair(scoring, inside)} AS units
        FROM recent d JOIN w{suffix} w USING (eid)
        WHERE d.day BETWEEN {_d(before.first)} AND {_d(now.as_of)}
        GROUP BY d.uid, d.aid
        """,
    )


def lifetime_pairs(con: duckdb.DuckDBPyConnection, profiles: Sequence[ProfileConfig], life: str) -> None:
    """``lp_<index>`` of every profile: its lifetime facts per (user, account) pair -- first day, latest
    time, units ever, and the lifetime count of each activation criterion's event (``c0``, ``c1``...).

    One scan of the lifetime totals for every profile (views over ``lp_all``), each profile's weights as
    columns of one table: the scan and its GROUP BY were most of the cost, the same for every profile
    (10M events, two profiles: 0.09-0.14 s instead of 0.14-0.18 s)."""
    columns, aggregates = [], []
    for i, profile in enumerate(profiles):
        scoring = profile.scoring
        assert scoring is not None
        register_weights(con, scoring, f"w_{i}")
        columns.append(f"w_{i}.bit AS bit_{i}, w_{i}.unit AS unit_{i}, w_{i}.adopt AS adopt_{i}")
        aggregates.append(f"{_units_of_pair(scoring, w='wl', suffix=f'_{i}')} AS units_{i}")
        # An event never seen has no id: its count is 0.
        eids = event_ids(con, [c.event for c in scoring.criteria()])
        aggregates += [
            f"sum(l.n) FILTER (WHERE l.eid = {eids.get(c.event, 'NULL')}) AS c{j}_{i}"
            for j, c in enumerate(scoring.criteria())
        ]
    seen = " UNION ".join(f"SELECT eid FROM w_{i}" for i in range(len(profiles)))
    joins = " ".join(f"LEFT JOIN w_{i} USING (eid)" for i in range(len(profiles)))
    do(con, f"CREATE OR REPLACE TEMP TABLE wl AS SELECT eid, {', '.join(columns)} FROM ({seen}) {joins}")
    do(
        con,
        f"""
        CREATE OR REPLACE TEMP TABLE lp_all AS
        SELECT l.uid, l.aid, min(l.first_day) AS first_day, max(l.last_ts) AS last_ts, {", ".join(aggregates)}
        FROM {life} l LEFT JOIN wl USING (eid) GROUP BY l.uid, l.aid
        """,
    )
    for i, profile in enumerate(profiles):
        assert profile.scoring is not None
        counts = "".join(f", c{j}_{i} AS c{j}" for j in range(len(profile.scoring.criteria())))
        do(
            con,
            f"CREATE OR REPLACE TEMP VIEW lp_{i} AS "
            f"SELECT uid, aid, first_day, last_ts, units_{i} AS units {counts} FROM lp_all",
        )


def _user_window(con: duckdb.DuckDBPyConnection, scoring: ScoringConfig, suffix: str) -> None:
    """``us<suffix>``: per user with a scored event in the window or the previous one, from the profile's
    pairs: raw points, score and P90 anchor of the window (``raw_now``, ``score``, ``p90``; NULL raw and
    anchor for a user with nothing in the window) and of the previous window (``raw_before``,
    ``previous``), active days (``frequency``) and units of the window.

    One table and one join where the users' view had three (scores now, scores before, window facts),
    each grouping the pairs by user again (100M events: 0.35-0.47 s of 0.52 s reading one profile's
    users went to those joins)."""
    score = "CAST(CASE WHEN {raw} > 0 THEN greatest(1, round(100 * least({raw}, {p90}) / {p90})) ELSE 0 END AS INTEGER)"
    do(
        con,
        f"""
        CREATE OR REPLACE TEMP TABLE us{suffix} AS
        WITH u AS (
          SELECT uid, sum(raw_now) AS raw_now, sum(raw_before) AS raw_before,
                 -- days of the window as bits (W <= 30): the number of active days without a DISTINCT
                 bit_count(bit_or(days)) AS frequency,
                 {_distinct_units(scoring, "units", "days IS NOT NULL")} AS units
          FROM wp{suffix} GROUP BY uid),
        now AS (SELECT quantile_cont(raw_now, 0.9) AS p90 FROM u WHERE raw_now > 0),
        before AS (SELECT quantile_cont(raw_before, 0.9) AS p90 FROM u WHERE raw_before > 0)
        SELECT uid, raw_now, raw_before, frequency, units,
               CASE WHEN raw_now IS NOT NULL THEN now.p90 END AS p90,
               {score.format(raw="raw_now", p90="now.p90")} AS score,
               {score.format(raw="raw_before", p90="before.p90")} AS previous
        FROM u, now, before
        """,
    )


def lifetime_table(con: duckdb.DuckDBPyConnection, as_of: date) -> str:
    """Per (uid, aid, eid) up to ``as_of``: first day, latest time, count.

    The rollup keeps this table current (``r.lifetime``), so scoring the latest day reads no history; an
    earlier ``as_of`` (a back-fill) aggregates the daily rows up to that day instead -- the same numbers.
    """
    last = do(con, "SELECT max(day) FROM r.daily")[0][0]
    if last is None or as_of >= last:
        return "r.lifetime"
    do(
        con,
        f"""
        CREATE OR REPLACE TEMP TABLE life_as_of AS
        SELECT uid, aid, eid, min(day) AS first_day, max(last_ts) AS last_ts, sum(n)::BIGINT AS n
        FROM r.daily WHERE day <= {_d(as_of)} GROUP BY ALL
        """,
    )
    return "life_as_of"


def compute_profile(
    con: duckdb.DuckDBPyConnection,
    profile: ProfileConfig,
    as_of: date,
    computed_at: str,
    index: int,
) -> None:
    """``profile``'s metrics as of the end of ``as_of``, as the views ``score_users_<index>`` and
    ``score_accounts_<index>`` over the profile's small tables (``score_views`` unites them);
    ``lifetime_pairs`` must have run (it registered the profile's weights), and ``recent_table`` must
    cover this profile's windows.

    Views, not tables: the rows are computed as they are read (once per sync), which costs less than
    materialising them first (10M events: 0.18 s to store a profile's 61k user rows, 0.10 s to compute
    them straight into Arrow)."""
    scoring = profile.scoring
    assert scoring is not None
    now = Window(as_of, profile.window_days)
    units = max(1, len(scoring.adoption_units()))
    criteria = len(scoring.criteria())
    members_since = as_of - timedelta(days=scoring.total_users_days - 1)
    activation = f"round(100.0 * base.met / {criteria}, 1)" if criteria else "NULL::DOUBLE"
    name = profile.name.replace("'", "''")

    # Activation: each criterion met is a 1 (the counts are the lifetime pairs' c0, c1...).
    x = f"_{index}"  # the profile's own tables: its score views read them after the next profile ran
    _window_pairs(con, scoring, now, x)
    _user_window(con, scoring, x)
    met = " + ".join(
        f"(coalesce(sum(p.c{i}), 0) >= {c.min_count})::INTEGER" for i, c in enumerate(scoring.criteria())
    )

    def per(key: str, group: str) -> str:
        """Lifetime facts per ``key`` (uid or aid) and, per account, window facts, combined from the
        profile's pairs, with ``group`` filtering pairs (a user's window facts are in ``us``)."""
        if key == "uid":
            return f"""
        base AS (
          SELECT p.uid, min(p.first_day) AS first_seen, max(p.last_ts) AS last_active,
                 max_by(p.aid, p.last_ts) FILTER (WHERE p.aid IS NOT NULL) AS aid,
                 {_distinct_units(scoring, "p.units")} AS ever_units, {met or "0"} AS met
          FROM lp{x} p GROUP BY p.uid)
        """
        return f"""
        base AS (
          SELECT p.{key}, min(p.first_day) AS first_seen, max(p.last_ts) AS last_active,
                 {_distinct_units(scoring, "p.units")} AS ever_units, {met or "0"} AS met
          FROM lp{x} p WHERE true {group} GROUP BY p.{key}),
        win AS (
          SELECT p.{key},
                 -- days of the window as bits (W <= 30): the number of active days without a DISTINCT
                 bit_count(bit_or(p.days)) AS frequency,
                 count(p.days) AS active_users,
                 {_distinct_units(scoring, "p.units")} AS units
          FROM wp{x} p WHERE p.days IS NOT NULL {group} GROUP BY p.{key})
        """

    def common(score: str, previous: str) -> str:
        return f"""
          {score} AS score,
          {activation} AS activation,
          round(100.0 * coalesce(win.units, 0) / {units}, 1) AS adoption_recent,
          round(100.0 * base.ever_units / {units}, 1) AS adoption_ever,
          base.last_active,
          coalesce(win.frequency, 0) AS frequency,
          '{computed_at}' AS computed_at,
          CASE WHEN base.first_seen < {_d(now.first)} THEN {previous} END AS previous_score,
          base.first_seen,
          {_d(as_of)} - CAST(base.last_active AS DATE) AS days_inactive,
          {_d(as_of)} - base.first_seen AS days_since_signup,
          base.first_seen >= {_d(now.first)} AS new_in_window
        """

    user_rules, user_mask, user_join = _segment_column(rules_for(scoring, "users"))
    account_rules, account_mask, account_join = _segment_column(rules_for(scoring, "accounts"))
    select_users = f"""
        WITH {per("uid", "")},
        facts AS (
          SELECT base.uid, base.aid, '{name}' AS score_name,
                 {common("coalesce(win.score, 0)", "coalesce(win.previous, 0)")},
                 coalesce(win.raw_now, 0) AS raw, win.p90, NULL::BIGINT AS total_users
          FROM base
          LEFT JOIN us{x} win USING (uid))
        SELECT u.user_id, a.account_id, e.email, score_name, score,
               {user_rules} AS segments, activation, adoption_recent, adoption_ever, last_active,
               frequency, computed_at, raw, p90, previous_score, score - previous_score AS trend, first_seen
        FROM (SELECT *, {user_mask} AS seg_mask FROM (SELECT *, score - previous_score AS trend FROM facts)) facts
        JOIN r.users u ON u.uid = facts.uid
        LEFT JOIN r.accounts a ON a.aid = facts.aid
        LEFT JOIN r.emails e ON e.uid = facts.uid
        {user_join}
    """
    do(con, f"CREATE OR REPLACE TEMP VIEW score_users{x} AS {select_users}")

    # An account's users: those with any event for it in the last total_users_days (its total users). Its
    # previous score is the mean of the same users' previous-window scores.
    select_accounts = f"""
        WITH {per("aid", "AND aid IS NOT NULL")},
        members AS (
          SELECT aid, uid FROM lp{x}
          WHERE aid IS NOT NULL AND last_ts >= TIMESTAMPTZ '{members_since.isoformat()} 00:00:00+00'),
        scores AS (
          SELECT m.aid, count(*) AS total_users,
                 CAST(round(avg(coalesce(s.score, 0))) AS INTEGER) AS score,
                 CAST(round(avg(coalesce(s.previous, 0))) AS INTEGER) AS previous
          FROM members m LEFT JOIN us{x} s USING (uid)
          GROUP BY m.aid),
        facts AS (
          SELECT base.aid, '{name}' AS score_name,
                 {common("coalesce(scores.score, 0)", "coalesce(scores.previous, 0)")},
                 coalesce(win.active_users, 0) AS active_users, coalesce(scores.total_users, 0) AS total_users
          FROM base
          LEFT JOIN win USING (aid)
          LEFT JOIN scores USING (aid))
        SELECT a.account_id, ad.domain, ad.name, score_name, score,
               {account_rules} AS segments, activation,
               adoption_recent, adoption_ever, last_active, frequency, active_users, total_users, computed_at,
               NULL::DOUBLE AS raw, NULL::DOUBLE AS p90, previous_score, score - previous_score AS trend,
               first_seen
        FROM (SELECT *, {account_mask} AS seg_mask FROM (SELECT *, score - previous_score AS trend FROM facts)) facts
        JOIN r.accounts a ON a.aid = facts.aid
        LEFT JOIN account_details ad ON ad.account_id = a.account_id
        {account_join}
    """
    do(con, f"CREATE OR REPLACE TEMP VIEW score_accounts{x} AS {select_accounts}")


def _segment_column(rules: list[SegmentRule]) -> tuple[str, str, str]:
    """(the segments column, the mask column it needs in ``facts``, the join it needs): looked up by the
    mask of the rules that hold when they are few enough (``segment_lookup_sql``, computed as the view is
    read: a table of its own cost a statement, 7-14 ms, per profile and kind), else built per row."""
    if not 0 < len(rules) <= LOOKUP_RULES:
        return segments_sql(rules), "NULL", ""
    join = f"LEFT JOIN ({segment_lookup_sql(rules)}) seg ON seg.mask = facts.seg_mask"
    return "seg.segments", segment_mask_sql(rules), join


def score_views(con: duckdb.DuckDBPyConnection, profiles: int) -> None:
    """``score_users`` and ``score_accounts``: every profile's rows (``compute_profile`` ran for each)."""
    for kind in ("users", "accounts"):
        union = " UNION ALL ".join(f"SELECT * FROM score_{kind}_{i}" for i in range(profiles))
        do(con, f"CREATE OR REPLACE TEMP VIEW score_{kind} AS {union}")
