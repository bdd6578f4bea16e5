"""Events -> metrics -> the Segment emulator: every computed metric lands as its trait, and a re-run over
unchanged events sends nothing; a new day of events sends only the objects whose metrics moved."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from accoil_sync.config.settings import Settings, load_settings
from accoil_sync.emulator import Emulator
from accoil_sync.scoring import Scorer
from accoil_sync.scoring.generate import StreamSpec, write_stream
from accoil_sync.sync.runner import RunResult, execute
from tests.conftest import write
from tests.integration.conftest import destination_section
from tests.unit.test_scoring import AS_OF, SCORING

SPEC = StreamSpec(users=80, days=35, end=AS_OF, seed=11)


@pytest.fixture
def events_settings(served: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY", "wk_test_key")
    path = write(
        "accoil-sync.toml",
        f"""
[source]
kind = "events"
events = "events/*.parquet"
as_of = "{AS_OF.isoformat()}"
[state]
path = "state/state.db"
"""
        + destination_section(served, "segment")
        + SCORING,
    )
    return load_settings(path)


def sync(settings: Settings, allow_mass_change: bool = False) -> RunResult:
    return asyncio.run(
        execute(settings, deliver=True, destinations=["segment"], allow_mass_change=allow_mass_change)
    )


def test_events_to_segment_then_nothing_then_only_what_moved(
    events_settings: Settings, emulator: Emulator
) -> None:
    days = [SPEC.start + timedelta(days=i) for i in range(SPEC.days)]
    write_stream(SPEC, Path("events"), days=days[:-1])
    settings = events_settings.model_copy(
        update={"source": events_settings.source.model_copy(update={"as_of": days[-2]})}
    )
    first = sync(settings)
    assert first.source.invalid == 0
    with Scorer(settings.source, settings.profiles, settings.state.directory) as scorer:
        scorer.run(days[-2])
        expected = {
            r[0]: r[1:]
            for r in scorer.con.sql(
                "SELECT user_id, score, activation, adoption_recent, frequency, list_sort(segments) FROM score_users"
            ).fetchall()
        }
        accounts = {
            r[0]: r[1:]
            for r in scorer.con.sql(
                "SELECT account_id, score, active_users, total_users FROM score_accounts"
            ).fetchall()
        }
    state = emulator.segment.state()
    assert first.deliveries["segment"].counts == {"ok": len(expected) + len(accounts)}
    for key, (score, activation, adoption, frequency, segments) in expected.items():
        traits = state["users"][key]
        assert traits["Accoil_Default_Score"] == score
        assert traits["Accoil_Default_Activation"] == activation
        assert traits["Accoil_Default_Adoption_Recent"] == adoption
        assert traits["Accoil_Default_Frequency"] == frequency
        assert traits["Accoil_Default_Segments"] == segments
    for key, (score, active, total) in accounts.items():
        group = state["groups"][key]
        assert (
            group["Accoil_Default_Score"],
            group["Accoil_Default_ActiveUsers"],
            group["Accoil_Default_TotalUsers"],
        ) == (
            score,
            active,
            total,
        )

    requests = emulator.segment.state()["requests"]["total"]
    again = sync(settings)
    assert again.deliveries["segment"].counts == {}
    assert emulator.segment.state()["requests"]["total"] == requests  # unchanged events: zero writes

    write_stream(SPEC, Path("events"), days=days[-1:])  # the next day arrives
    moved = settings.model_copy(update={"source": settings.source.model_copy(update={"as_of": days[-1]})})
    # A new day moves 13 of this small stream's 14 accounts (the P90 anchor moves with it): past the
    # mass-change guard's 90% (issue 15), so this run allows it, as an operator would once.
    third = sync(moved, allow_mass_change=True)
    plan = third.plans["segment"]
    assert 0 < plan.writes < len(expected) + len(accounts) + 10
    assert sum(c.unchanged for c in plan.counts.values()) > 0  # untouched objects are not re-sent
    assert third.deliveries["segment"].counts == {"ok": plan.writes}
