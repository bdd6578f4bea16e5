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


def events_config(destination: str, source_extra: str = "") -> Settings:
    """An events source over ``events/*.parquet`` as of AS_OF, delivering to ``destination`` (a TOML
    section)."""
    path = write(
        "accoil-sync.toml",
        f"""
[source]
kind = "events"
events = "events/*.parquet"
{source_extra}
as_of = "{AS_OF.isoformat()}"
[state]
path = "state/state.db"
"""
        + destination
        + SCORING,
    )
    return load_settings(path)


@pytest.fixture
def events_settings(served: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY", "wk_test_key")
    return events_config(destination_section(served, "segment"))


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


def test_account_details_let_hubspot_find_companies_by_domain_and_create_them_named(
    served: str, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events name an account id only; HubSpot matches companies by domain by default and never creates a
    nameless one (docs/IDENTITY.md). ``source.accounts`` beside the events gives each account its name and
    domain: an existing company on that domain (made in HubSpot, without our key) receives the metrics and
    our key, an unknown one is created with its name, and an account without details is reported, not
    created -- with the default ``company_match = "domain"``."""
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN", "pat-test")
    spec = StreamSpec(users=40, days=20, end=AS_OF, seed=5)
    write_stream(spec, Path("events"))
    import duckdb

    ids = [
        r[0] for r in duckdb.sql("SELECT DISTINCT account_id FROM 'events/*.parquet' ORDER BY 1").fetchall()
    ]
    assert len(ids) >= 3
    existing, created, bare = ids[0], ids[1], ids[2:]
    made, _ = emulator.hubspot._write(
        "companies", None, {"name": "Pre-existing Co", "domain": "www.Existing.io"}
    )
    write(
        "accounts.csv",
        "account_id,name,domain\n"
        f"{existing},Existing Inc,https://existing.io/\n"
        f"{created},Created Ltd,created.io\n",
    )
    settings = events_config(
        destination_section(served, "hubspot", create_missing=True), 'accounts = "accounts.csv"'
    )
    result = asyncio.run(execute(settings, deliver=True, destinations=["hubspot"]))
    companies = emulator.hubspot.state()["companies"]
    by_key = {
        p.get("accoil_account_id"): (cid, p) for cid, p in companies.items() if p.get("accoil_account_id")
    }
    assert by_key[existing][0] == made["id"]  # found by its normalised domain, not duplicated
    assert by_key[existing][1]["name"] == "Pre-existing Co"  # a hand-typed name is not overwritten
    assert by_key[created][1]["name"] == "Created Ltd" and by_key[created][1]["domain"] == "created.io"
    assert by_key[existing][1]["accoil_default_score"] is not None
    assert not set(bare) & set(by_key)  # no details: not found, and never created nameless
    assert len(companies) == 2
    assert result.deliveries["hubspot"].reasons.get("not_found") == len(bare)
