"""Why an object has its score: the events that contributed most, and how far the next score band is.

One SQL statement per profile and kind builds every object's explanation as a JSON document, so a sync can
store all of them with the card data (the card's details page then only formats one) and
``accoil-sync score --explain KEY`` runs the same statement for one key.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import duckdb
import orjson

from accoil_sync.config.models import ProfileConfig
from accoil_sync.scoring.db import do
from accoil_sync.scoring.metrics import Window, register_weights
from accoil_sync.scoring.segments import rules_for, score_bands
from accoil_sync.traits.explanation import Contribution, Explanation
from accoil_sync.traits.names import ObjectKind

__all__ = ["Contribution", "Explanation", "explain", "explanation_tables"]

TOP = 5
# The tables ``explanation_tables`` fills: kind -> (table, key column of the score table).
TABLES = {
    ObjectKind.USER: ("explain_users", "user_id"),
    ObjectKind.ACCOUNT: ("explain_accounts", "account_id"),
}


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _explanation_sql(profile: ProfileConfig, kind: ObjectKind, as_of: date, one_key: bool) -> str:
    """SELECT key, score_name, doc (JSON text), fp over ``recent``, the score tables and ``w`` (this
    profile's weights, ``register_weights``); ``one_key``: filtered by a ``?`` parameter.

    ``fp`` digests what is the object's own -- its counts, score, segments, next band -- and leaves out
    what moves with the population's P90 anchor (``p90``, ``raw_to_next``): else every object's
    explanation would change, and the card rewrite every object, whenever the anchor moved."""
    assert profile.scoring is not None
    user = kind is ObjectKind.USER
    column = TABLES[kind][1]
    window = Window(as_of, profile.window_days)
    bands = score_bands(rules_for(profile.scoring, "users" if user else "accounts"))
    band_list = (
        "[" + ", ".join(f"{{'at': {bound}::DOUBLE, 'name': {_text(name)}}}" for bound, name in bands) + "]"
        if bands
        else "[]::STRUCT(at DOUBLE, name VARCHAR)[]"
    )
    heaviest = max(profile.scoring.event_weights(), key=lambda t: (t[2], t[0]))
    # The rollup counts by id: (id column, name table) of the key.
    id_col, names = ("uid", "r.users") if user else ("aid", "r.accounts")
    key_filter = f"AND d.{id_col} = (SELECT {id_col} FROM {names} WHERE {column} = ?)" if one_key else ""
    score_filter = f"AND s.{column} = ?" if one_key else ""
    # A user's published score is rounded: it reaches ``at`` once 100 x raw / P90 >= at - 0.5.
    raw_to_next = (
        "CASE WHEN nb.at IS NOT NULL AND s.p90 > 0 THEN "
        "round(greatest(0, (nb.at - 0.5) * round(s.p90, 4) / 100 - s.raw), 1) END"
        if user
        else "NULL::DOUBLE"
    )
    return f"""
        WITH c AS (
          SELECT d.{id_col} AS id, w.event, w.unit AS feature, w.weight, sum(d.n)::BIGINT AS count,
                 (sum(d.n) * w.weight)::BIGINT AS points
          FROM recent d JOIN w USING (eid)
          WHERE d.day BETWEEN DATE '{window.first}' AND DATE '{window.as_of}' AND d.{id_col} IS NOT NULL
                {key_filter}
          GROUP BY d.{id_col}, w.event, w.unit, w.weight),
        t AS (
          SELECT k.{column} AS key, t.total, t.top
          FROM (SELECT id, sum(points) AS total,
                       list({{'event': event, 'feature': feature, 'count': count, 'weight': weight,
                              'points': points}} ORDER BY points DESC, event)[1:{TOP}] AS top
                FROM c GROUP BY id) t
          JOIN {names} k ON k.{id_col} = t.id),
        s AS (
          SELECT s.*, list_filter({band_list}, lambda b: b.at > s.score)[1] AS nb
          FROM {"score_users" if user else "score_accounts"} s
          WHERE s.score_name = {_text(profile.name)} {score_filter})
        SELECT s.{column} AS key, s.score_name, to_json({{
          'kind': {_text(kind.value)}, 'key': s.{column}, 'profile': s.score_name, 'score': s.score,
          'segments': s.segments, 'raw': s.raw,
          -- quantile_cont interpolates in floating point (29.000000000000004): kept to 4 decimals.
          'p90': round(s.p90, 4), 'previous_score': s.previous_score,
          'top': coalesce(list_transform(t.top, lambda x: {{'event': x.event, 'feature': x.feature,
                   'count': x.count, 'weight': x.weight, 'points': x.points,
                   'share': 100.0 * x.points / greatest(t.total, 1)}}), []),
          'next_band': s.nb.name, 'next_band_at': s.nb.at, 'score_to_next': round(s.nb.at - s.score, 1),
          'raw_to_next': {raw_to_next},
          'total_users': {"NULL::BIGINT" if user else "s.total_users"},
          'heaviest_event': {_text(heaviest[0])}, 'heaviest_weight': {int(heaviest[2])}
        }})::VARCHAR AS doc,
        hash(s.score, s.segments, s.raw, s.previous_score, t.top, t.total, s.nb.name,
             {"NULL::BIGINT" if user else "s.total_users"}) AS fp
        FROM s LEFT JOIN t ON t.key = s.{column}
    """


def explanation_tables(
    con: duckdb.DuckDBPyConnection, profiles: Sequence[ProfileConfig], as_of: date
) -> None:
    """``explain_users``/``explain_accounts`` (key, score_name, doc): every scored object's explanation,
    in bulk (needs the score tables and ``recent``)."""
    for table, _ in TABLES.values():
        do(
            con,
            f"CREATE OR REPLACE TEMP TABLE {table} (key VARCHAR, score_name VARCHAR, doc VARCHAR, fp UBIGINT)",
        )
    for profile in profiles:
        assert profile.scoring is not None
        register_weights(con, profile.scoring)
        for kind, (table, _) in TABLES.items():
            do(con, f"INSERT INTO {table} {_explanation_sql(profile, kind, as_of, one_key=False)}")


def explain(
    con: duckdb.DuckDBPyConnection, profiles: Sequence[ProfileConfig], as_of: date, key: str
) -> list[Explanation]:
    """Every profile's explanation of ``key``, as a user and/or an account (needs the score tables)."""
    out = []
    for kind in ObjectKind:
        for profile in sorted(profiles, key=lambda p: p.name):
            assert profile.scoring is not None
            register_weights(con, profile.scoring)
            rows = do(con, _explanation_sql(profile, kind, as_of, one_key=True), [key, key])
            out += [Explanation.from_json(orjson.loads(row[2])) for row in rows]
    return out
