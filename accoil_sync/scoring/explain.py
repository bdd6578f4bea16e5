"""Why an object has its score: the events that contributed most, and how far the next score band is."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import duckdb

from accoil_sync.config.models import ProfileConfig
from accoil_sync.scoring.metrics import Window
from accoil_sync.scoring.rollup import do
from accoil_sync.scoring.segments import rules_for, score_bands
from accoil_sync.traits.names import ObjectKind

TOP = 5


@dataclass(frozen=True, slots=True)
class Contribution:
    event: str
    feature: str
    count: int
    weight: int
    points: int
    share: float  # of the raw score, 0-100


@dataclass(slots=True)
class Explanation:
    kind: str
    key: str
    profile: str
    score: float
    segments: list[str]
    raw: float | None
    p90: float | None
    previous_score: float | None
    top: list[Contribution] = field(default_factory=list)
    next_band: str | None = None
    next_band_at: float | None = None
    score_to_next: float | None = None
    raw_to_next: float | None = None  # users: weighted points still needed (a user's score is raw / P90)
    hint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        head = f"{self.kind} {self.key} [{self.profile}]: score {self.score:g}"
        if self.raw is not None and self.p90:
            head += f" (raw {self.raw:g} against the P90 anchor {self.p90:g})"
        if self.previous_score is not None:
            head += f"; previous period {self.previous_score:g}"
        out = [head, f"  segments: {', '.join(self.segments) or '-'}"]
        for c in self.top:
            unit = f" ({c.feature})" if c.feature != c.event else ""
            out.append(f"  {c.event}{unit}: {c.count} x weight {c.weight} = {c.points} ({c.share:.0f}%)")
        if not self.top:
            out.append("  no scored event in the window")
        if self.next_band is not None:
            out.append(
                f"  next band: {self.next_band} at {self.next_band_at:g}, {self.score_to_next:g} point(s) away"
            )
        if self.hint:
            out.append(f"  {self.hint}")
        return out


def explain(
    con: duckdb.DuckDBPyConnection, profiles: list[ProfileConfig], as_of: date, key: str
) -> list[Explanation]:
    """Every profile's explanation of ``key``, as a user and/or an account (needs the score tables)."""
    out = []
    for kind, table, column in (
        (ObjectKind.USER, "score_users", "user_id"),
        (ObjectKind.ACCOUNT, "score_accounts", "account_id"),
    ):
        users = "NULL" if kind is ObjectKind.USER else "total_users"
        rows = do(
            con,
            f"SELECT score_name, score, segments, raw, p90, previous_score, {users} FROM {table} "
            f"WHERE {column} = ? ORDER BY score_name",
            [key],
        )
        for name, score, segments, raw, p90, previous, total_users in rows:
            profile = next(p for p in profiles if p.name == name)
            # quantile_cont interpolates in floating point (29.000000000000004): shown to 4 decimals.
            anchor = round(p90, 4) if p90 is not None else None
            item = Explanation(kind.value, key, name, score, list(segments), raw, anchor, previous)
            item.top = _contributions(con, profile, as_of, column, key)
            _next_band(item, profile, kind, total_users)
            out.append(item)
    return out


def _contributions(
    con: duckdb.DuckDBPyConnection, profile: ProfileConfig, as_of: date, column: str, key: str
) -> list[Contribution]:
    assert profile.scoring is not None
    weights = profile.scoring.event_weights()
    window = Window(as_of, profile.window_days)
    values = ", ".join("(?, ?, ?)" for _ in weights)
    params: list[object] = [v for triple in weights for v in triple]
    rows = do(
        con,
        f"""
        SELECT d.event, w.unit, sum(d.n)::BIGINT AS count, w.weight, (sum(d.n) * w.weight)::BIGINT AS points
        FROM r.daily d JOIN (VALUES {values}) w(event, unit, weight) USING (event)
        WHERE d.{column} = ? AND d.day BETWEEN ? AND ?
        GROUP BY d.event, w.unit, w.weight ORDER BY points DESC, d.event
        """,
        [*params, key, window.first, window.as_of],
    )
    total = sum(r[4] for r in rows) or 1
    return [
        Contribution(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), 100.0 * r[4] / total) for r in rows[:TOP]
    ]


def _next_band(item: Explanation, profile: ProfileConfig, kind: ObjectKind, total_users: int | None) -> None:
    assert profile.scoring is not None
    bands = score_bands(rules_for(profile.scoring, "users" if kind is ObjectKind.USER else "accounts"))
    above = [(bound, name) for bound, name in bands if bound > item.score]
    if not above:
        return
    bound, name = above[0]
    item.next_band, item.next_band_at = name, bound
    item.score_to_next = round(bound - item.score, 1)
    if kind is ObjectKind.USER and item.p90 and item.raw is not None:
        # The published score is rounded: it reaches ``bound`` once 100 x raw / P90 >= bound - 0.5.
        item.raw_to_next = round(max(0.0, (bound - 0.5) * item.p90 / 100 - item.raw), 1)
        heaviest = max(profile.scoring.event_weights(), key=lambda t: (t[2], t[0]))
        times = math.ceil(item.raw_to_next / heaviest[2]) if item.raw_to_next else 0
        item.hint = (
            f"{item.raw_to_next:g} weighted point(s) more in the window, e.g. {times} x {heaviest[0]} "
            f"(weight {heaviest[2]})"
        )
    elif kind is ObjectKind.ACCOUNT and total_users:
        item.hint = (
            f"the account score is the mean of its {total_users} user score(s): about "
            f"{math.ceil((bound - item.score) * total_users)} more user score point(s) in total reach it"
        )
