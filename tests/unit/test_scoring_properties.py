"""Properties of the score formula, over generated event sets (hypothesis)."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_scoring import ago, events_csv, score, settings_for

EVENTS = ["Project Created", "Report Viewed", "Comment Added", "Teammate Invited", "Login"]
SCORED = EVENTS[:-1]
FAST = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@contextmanager
def fresh_directory() -> Iterator[None]:
    old = os.getcwd()
    with tempfile.TemporaryDirectory() as path:
        os.chdir(path)
        try:
            yield
        finally:
            os.chdir(old)


def raws(rows: list[tuple[str, str, str, str]]) -> dict[str, int]:
    with fresh_directory():
        events_csv(rows)
        users, _ = score(settings_for())
    return {key: row["raw"] for key, row in users.items()}


event_rows = st.lists(
    st.tuples(st.sampled_from(["u1", "u2", "u3"]), st.sampled_from(EVENTS), st.integers(0, 12)),
    min_size=1,
    max_size=25,
)


@FAST
@given(rows=event_rows, extra_event=st.sampled_from(SCORED), extra_day=st.integers(0, 6))
def test_an_extra_weighted_event_never_lowers_a_raw_score(
    rows: list[tuple[str, str, int]], extra_event: str, extra_day: int
) -> None:
    base = [(user, "A", event, ago(days)) for user, event, days in rows]
    before = raws(base)
    after = raws([*base, ("u1", "A", extra_event, ago(extra_day))])
    assert after["u1"] > before.get("u1", 0)  # every weight is at least 1
    for user, raw in before.items():
        assert after[user] >= raw


def quantile_cont(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


@FAST
@given(counts=st.lists(st.integers(0, 15), min_size=1, max_size=14))
def test_scores_are_raw_over_the_p90_anchor(counts: list[int]) -> None:
    rows = [(f"u{i}", "", "Report Viewed", ago(0)) for i, n in enumerate(counts) for _ in range(n)]
    rows.append(("idle", "", "Login", ago(0)))  # so that some event exists whatever the counts
    with fresh_directory():
        events_csv(rows)
        users, _ = score(settings_for())
    active = [3.0 * n for n in counts if n > 0]
    for i, n in enumerate(counts):
        row = users.get(f"u{i}")
        if n == 0:
            assert row is None  # no event at all: not a user yet
            continue
        assert row is not None
        p90 = quantile_cont(active, 0.9)
        assert row["p90"] == pytest.approx(p90)
        exact = 100 * min(3.0 * n, p90) / p90
        assert abs(row["score"] - exact) <= 0.5 + 1e-9  # rounded to a whole number
        assert 1 <= row["score"] <= 100
        if 3.0 * n >= p90:
            assert row["score"] == 100  # the P90 anchor (and above) maps to 100
    assert users["idle"]["score"] == 0
