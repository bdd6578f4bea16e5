"""Segment rules -> SQL. The suggested segments are ordinary rules, so a custom one is configuration too."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from accoil_sync.config.scoring import ScoringConfig, SegmentRule


def _rule(name: str, kinds: Sequence[str] = ("users", "accounts"), **conditions: float | bool) -> SegmentRule:
    return SegmentRule.model_validate({"name": name, "kinds": list(kinds), **conditions})


def suggested() -> list[SegmentRule]:
    """Accoil's suggested segments (reference/peers.md §6). Exactly 75 is Most Engaged: the next band down
    is documented as 50-74. "Recently Inactive" is last active 30 to 60 days ago, both ends included;
    "New" is a first event inside the profile's window, evaluated per profile."""
    return [
        _rule("Most Engaged", score_at_least=75),
        _rule("Slightly Engaged", score_at_least=50, score_below=75),
        _rule("Passive", score_at_least=25, score_below=50),
        _rule("Least Engaged", score_below=25),
        _rule("New", signed_up_in_window=True),
        _rule("Recently Inactive", days_inactive_at_least=30, days_inactive_at_most=60),
        _rule("Red Hot", trend_at_least=10),
        _rule("Ice Cold", trend_at_most=-10),
        _rule("Mature", days_since_signup_at_least=181),
        _rule("Active Today", days_inactive_at_most=0),
        _rule("Multi-User Accounts", kinds=["accounts"], total_users_at_least=2),
    ]


def rules_for(scoring: ScoringConfig, kind: str) -> list[SegmentRule]:
    rules = (suggested() if scoring.suggested_segments else []) + list(scoring.segments)
    return [r for r in rules if kind in r.kinds]


_CONDITIONS: dict[str, str] = {
    "score_at_least": "score >= {}",
    "score_below": "score < {}",
    "days_inactive_at_least": "days_inactive >= {}",
    "days_inactive_at_most": "days_inactive <= {}",
    "days_since_signup_at_least": "days_since_signup >= {}",
    "days_since_signup_at_most": "days_since_signup <= {}",
    "trend_at_least": "trend >= {}",
    "trend_at_most": "trend <= {}",
    "frequency_at_least": "frequency >= {}",
    "activation_at_least": "activation >= {}",
    "total_users_at_least": "total_users >= {}",
    "total_users_at_most": "total_users <= {}",
}


def condition_sql(rule: SegmentRule) -> str:
    parts = []
    for name, value in rule.model_dump(exclude={"name", "kinds"}, exclude_none=True).items():
        if name == "signed_up_in_window":
            parts.append("new_in_window" if value else "NOT new_in_window")
        else:
            parts.append(_CONDITIONS[name].format(float(value)))
    return " AND ".join(parts)


_SEPARATOR = "\x1f"  # ASCII unit separator: not in any segment name (else the list form below is used)

# Up to this many rules, a row's list is looked up by the mask of the rules that hold, in a table of every
# mask (``segment_lookup_sql``, 2^12 = 4,096 rows at most): building the list per row cost 0.04-0.06 s of
# 0.13-0.16 s for one profile's 61k user rows at 10M events.
LOOKUP_RULES = 12


def _ordered(rules: Sequence[SegmentRule]) -> list[SegmentRule]:
    return sorted(rules, key=lambda r: r.name)  # code point order = DuckDB's list_sort on VARCHAR


def _holds(rule: SegmentRule) -> str:
    return f"coalesce({condition_sql(rule)}, false)"


def segments_sql(rules: Sequence[SegmentRule], holds: Callable[[int, SegmentRule], str] | None = None) -> str:
    """A VARCHAR[] of the names whose conditions hold (a NULL metric never matches), sorted; ``holds``:
    whether the k-th rule in name order holds, as SQL (default: its conditions).

    The names are joined and split (concat_ws skips the rules that do not hold), in name order so no
    per-row sort is needed: at 100M events the lambda-filtered, sorted list cost 1 s of CPU for 610k rows.
    """
    if not rules:
        return "[]::VARCHAR[]"
    test = holds or (lambda _, rule: _holds(rule))
    cases = ", ".join(
        f"CASE WHEN {test(k, r)} THEN '{r.name.replace(chr(39), chr(39) * 2)}' END"
        for k, r in enumerate(_ordered(rules))
    )
    if any(_SEPARATOR in r.name for r in rules):
        return f"list_sort(list_filter([{cases}], lambda x: x IS NOT NULL))"
    sep = f"chr({ord(_SEPARATOR)})"
    return f"coalesce(string_split(NULLIF(concat_ws({sep}, {cases}), ''), {sep}), []::VARCHAR[])"


def segment_mask_sql(rules: Sequence[SegmentRule]) -> str:
    """An INTEGER with bit k set when the k-th rule in name order holds (at most ``LOOKUP_RULES``)."""
    assert 0 < len(rules) <= LOOKUP_RULES
    return " | ".join(f"(CAST({_holds(r)} AS INTEGER) << {k})" for k, r in enumerate(_ordered(rules)))


def segment_lookup_sql(rules: Sequence[SegmentRule]) -> str:
    """SELECT mask, segments: for every ``segment_mask_sql`` value, the list ``segments_sql`` gives a row
    whose rules hold exactly as its bits say -- the same expression, so the same list."""
    assert 0 < len(rules) <= LOOKUP_RULES
    lists = segments_sql(rules, lambda k, _: f"((range >> {k}) & 1 = 1)")
    return f"SELECT CAST(range AS INTEGER) AS mask, {lists} AS segments FROM range({1 << len(rules)})"


def score_bands(rules: Sequence[SegmentRule]) -> list[tuple[float, str]]:
    """(lower score bound, segment name) of every rule that is a pure score band, lowest first: what
    "how far from the next band" measures against."""
    bands = []
    for r in rules:
        conditions = r.model_dump(exclude={"name", "kinds"}, exclude_none=True)
        if set(conditions) <= {"score_at_least", "score_below"}:
            bands.append((float(conditions.get("score_at_least", 0.0)), r.name))
    return sorted(bands)
