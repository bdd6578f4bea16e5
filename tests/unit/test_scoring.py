"""Scoring formulas against small fixtures computed by hand (the arithmetic is in each comment).

As of 2026-11-30, window 7 days (11-24..11-30), previous window 11-17..11-23, total users over 90 days
(09-02..11-30). Weights: Project Created 9, Report Viewed 3, feature Collaboration (weight 5) = Comment
Added (5) + Teammate Invited (own weight 7); Login is not scored. Activation: Project Created, and Report
Viewed at least 3 times. Adoption units: Collaboration, Project Created, Report Viewed (3).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from accoil_sync.config.scoring import SegmentRule
from accoil_sync.config.settings import Settings, load_settings
from accoil_sync.errors import ConfigError, SourceError
from accoil_sync.scoring import Scorer
from accoil_sync.scoring.segments import segment_lookup_sql, segment_mask_sql, segments_sql
from accoil_sync.traits import ObjectKind
from tests.conftest import write

AS_OF = date(2026, 11, 30)
NOW = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)

SCORING = """
[[profiles]]
name = "Default"
window_days = 7
[profiles.scoring]
weights = { "Project Created" = 9, "Report Viewed" = 3, "Teammate Invited" = 7 }
activation = ["Project Created", { event = "Report Viewed", min_count = 3 }]
[profiles.scoring.features.Collaboration]
weight = 5
events = ["Comment Added", "Teammate Invited"]
"""


def ago(days: int, hour: int = 9) -> str:
    return (datetime(2026, 11, 30, hour, tzinfo=UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def events_csv(rows: list[tuple[str, str, str, str]], path: str = "events/e1.csv") -> Path:
    lines = ["user_id,account_id,event,timestamp"] + [",".join(r) for r in rows]
    return write(path, "\n".join(lines) + "\n")


def settings_for(glob: str = "events/*.csv", scoring: str = SCORING, extra: str = "") -> Settings:
    path = write(
        "accoil-sync.toml",
        f"""
[source]
kind = "events"
events = "{glob}"
{extra}
[state]
path = "state/state.db"
[destinations.jsonl]
enabled = true
path = "out/deliveries.jsonl"
"""
        + scoring,
    )
    return load_settings(path)


def score(
    settings: Settings, as_of: date = AS_OF, now: datetime = NOW
) -> tuple[dict[str, Any], dict[str, Any]]:
    with Scorer(settings.source, settings.profiles, settings.state.directory) as scorer:
        scorer.run(as_of, now)
        users = scorer.con.sql("SELECT * FROM score_users").fetchall()
        user_cols = [d[0] for d in scorer.con.sql("SELECT * FROM score_users").description]
        accounts = scorer.con.sql("SELECT * FROM score_accounts").fetchall()
        account_cols = [d[0] for d in scorer.con.sql("SELECT * FROM score_accounts").description]
    return (
        {row[0]: dict(zip(user_cols, row, strict=True)) for row in users},
        {row[0]: dict(zip(account_cols, row, strict=True)) for row in accounts},
    )


FIXTURE = [
    # u1, account A: signed up 213 days ago; window raw 2x9 + 4x3 + 1x5 = 35 on days 0, 1, 2, 4 ago.
    ("u1", "A", "Login", ago(213)),
    ("u1", "A", "Project Created", ago(0)),
    ("u1", "A", "Project Created", ago(0, 8)),
    ("u1", "A", "Report Viewed", ago(1)),
    ("u1", "A", "Report Viewed", ago(1)),
    ("u1", "A", "Report Viewed", ago(2)),
    ("u1", "A", "Report Viewed", ago(2)),
    ("u1", "A", "Comment Added", ago(4)),
    *[("u1", "A", "Report Viewed", ago(10))] * 6,  # previous window: raw 18
    # u2, account A: first seen 10 days ago (previous window raw 3); window raw 5x3 = 15, all today.
    ("u2", "A", "Report Viewed", ago(10)),
    *[("u2", "A", "Report Viewed", ago(0, 7))] * 5,
    # u3, account B: first event on the window's first day (6 ago): Teammate Invited, raw 7.
    ("u3", "B", "Teammate Invited", ago(6)),
    # u4, account B: Login 30 days ago, Project Created 7 days ago (previous window's last day: raw 9).
    ("u4", "B", "Login", ago(30)),
    ("u4", "B", "Project Created", ago(7)),
    # u7, no account: new today, Report Viewed once: raw 3.
    ("u7", "", "Report Viewed", ago(0, 10)),
    # Only logins: u8 (B) 30 days ago, u9 61 days ago, u10 60 days ago; u5 (C) 90, u6 (C) 89 days ago.
    ("u8", "B", "Login", ago(30)),
    ("u9", "", "Login", ago(61)),
    ("u10", "", "Login", ago(60)),
    ("u5", "C", "Login", ago(90)),
    ("u6", "C", "Login", ago(89)),
]


@pytest.fixture
def scored() -> tuple[dict[str, Any], dict[str, Any]]:
    events_csv(FIXTURE)
    return score(settings_for())


def test_raw_score_p90_anchor_and_normalised_score(scored: tuple[dict[str, Any], dict[str, Any]]) -> None:
    users, _ = scored
    # Active raws 3, 7, 15, 35: P90 at position 0.9 x 3 = 2.7 -> 15 + 0.7 x (35 - 15) = 29.
    assert {k: users[k]["raw"] for k in ("u1", "u2", "u3", "u7")} == {"u1": 35, "u2": 15, "u3": 7, "u7": 3}
    assert users["u1"]["p90"] == pytest.approx(29.0)
    # 100 x min(raw, 29) / 29, rounded: 100, 51.7 -> 52, 24.1 -> 24, 10.3 -> 10; no scored event: 0.
    assert {k: users[k]["score"] for k in users} == {
        "u1": 100,
        "u2": 52,
        "u3": 24,
        "u7": 10,
        "u4": 0,
        "u8": 0,
        "u9": 0,
        "u10": 0,
        "u5": 0,
        "u6": 0,
    }


def test_activation_adoption_frequency_last_active(scored: tuple[dict[str, Any], dict[str, Any]]) -> None:
    users, _ = scored
    u1, u2, u3 = users["u1"], users["u2"], users["u3"]
    # u1: Project Created and 10 Report Viewed ever: 2 of 2; all 3 units in the window.
    assert (u1["activation"], u1["adoption_recent"], u1["adoption_ever"]) == (100, 100, 100)
    assert u1["frequency"] == 4  # days 0, 1, 2, 4 ago; the Login 213 days ago is neither scored nor recent
    assert u1["last_active"] == datetime(2026, 11, 30, 9, tzinfo=UTC)
    # u2: Report Viewed 6 times ever (>= 3) but no Project Created: 1 of 2; 1 of 3 units.
    assert (u2["activation"], u2["adoption_recent"], u2["adoption_ever"], u2["frequency"]) == (
        50,
        33.3,
        33.3,
        1,
    )
    # u3: Teammate Invited is in Collaboration: 1 of 3 units, no criterion.
    assert (u3["activation"], u3["adoption_recent"], u3["frequency"]) == (0, 33.3, 1)
    # u4: Project Created 7 days ago is outside the window but counts for activation and adoption ever.
    assert (users["u4"]["activation"], users["u4"]["adoption_recent"], users["u4"]["adoption_ever"]) == (
        50,
        0,
        33.3,
    )
    assert users["u1"]["account_id"] == "A" and users["u7"]["account_id"] is None


def test_trend_against_the_previous_window(scored: tuple[dict[str, Any], dict[str, Any]]) -> None:
    users, _ = scored
    # Previous raws: u1 18, u2 3, u4 9 -> P90 = 9 + 0.8 x 9 = 16.2: u1 100, u2 18.5 -> 19, u4 55.6 -> 56.
    assert (users["u1"]["previous_score"], users["u2"]["previous_score"], users["u4"]["previous_score"]) == (
        100,
        19,
        56,
    )
    assert (users["u1"]["trend"], users["u2"]["trend"], users["u4"]["trend"]) == (0, 33, -56)
    assert users["u3"]["trend"] is None  # first seen inside this window: no previous period to compare


def test_suggested_user_segments(scored: tuple[dict[str, Any], dict[str, Any]]) -> None:
    users, _ = scored
    segments = {k: users[k]["segments"] for k in users}
    assert segments["u1"] == ["Active Today", "Mature", "Most Engaged"]  # signed up 213 days ago
    assert segments["u2"] == ["Active Today", "Red Hot", "Slightly Engaged"]  # +33
    assert segments["u3"] == ["Least Engaged", "New"]  # first event on the window's first day
    assert segments["u4"] == ["Ice Cold", "Least Engaged"]  # -56
    assert segments["u7"] == ["Active Today", "Least Engaged", "New"]  # a user new today
    assert segments["u8"] == ["Least Engaged", "Recently Inactive"]  # 30 days: the lower edge
    assert segments["u10"] == ["Least Engaged", "Recently Inactive"]  # 60 days: the upper edge
    assert segments["u9"] == ["Least Engaged"]  # 61 days


def test_account_metrics(scored: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, accounts = scored
    a, b, c = accounts["A"], accounts["B"], accounts["C"]
    # A: users u1 (100) and u2 (52): mean 76; previous mean (100 + 19) / 2 = 59.5 -> 60; trend +16.
    assert (a["score"], a["previous_score"], a["trend"]) == (76, 60, 16)
    assert (a["active_users"], a["total_users"], a["frequency"]) == (2, 2, 4)
    assert (a["activation"], a["adoption_recent"], a["adoption_ever"]) == (100, 100, 100)
    assert a["segments"] == ["Active Today", "Mature", "Most Engaged", "Multi-User Accounts", "Red Hot"]
    # B: u3 24, u4 0, u8 0 -> 8; only u3 active; Project Created (u4) met, Report Viewed x3 not: 50.
    assert (b["score"], b["active_users"], b["total_users"], b["frequency"]) == (8, 1, 3, 1)
    assert (b["activation"], b["adoption_recent"], b["adoption_ever"]) == (50, 33.3, 66.7)
    # Previous: the same users' previous scores, u3 none (0), u4 56, u8 0 -> 18.7 -> 19; trend -11.
    assert (b["previous_score"], b["trend"]) == (19, -11)
    assert "Ice Cold" in b["segments"]
    # C: u5's only event is 90 days ago, outside the 90-day total-users window (09-02..11-30); u6 is in.
    assert (c["total_users"], c["active_users"], c["score"]) == (1, 0, 0)
    assert "Multi-User Accounts" not in c["segments"]
    assert c["last_active"] == datetime(2026, 9, 2, 9, tzinfo=UTC)


def test_score_band_edges_exactly_25_50_75() -> None:
    # Ten users with 4 Report Viewed (raw 12) anchor P90 at 12 (13 users: position 0.9 x 12 = 10.8 falls between two 12s);
    # 1, 2 and 3 views (raw 3, 6, 9) score exactly 25, 50 and 75: each edge belongs to the band above.
    rows = [(f"top{i}", "", "Report Viewed", ago(0)) for i in range(10) for _ in range(4)]
    for key, views in (("q25", 1), ("q50", 2), ("q75", 3)):
        rows += [(key, "", "Report Viewed", ago(0))] * views
    events_csv(rows)
    users, _ = score(settings_for(scoring=SCORING))
    assert users["top0"]["p90"] == 12
    bands = {"Most Engaged", "Slightly Engaged", "Passive", "Least Engaged"}
    found = {key: (users[key]["score"], bands & set(users[key]["segments"])) for key in ("q25", "q50", "q75")}
    assert found == {
        "q25": (25, {"Passive"}),
        "q50": (50, {"Slightly Engaged"}),
        "q75": (75, {"Most Engaged"}),
    }


def test_mature_boundary_and_custom_rules() -> None:
    events_csv([("old", "", "Login", ago(181)), ("young", "", "Login", ago(180))])
    custom = (
        SCORING
        + """
[[profiles.scoring.segments]]
name = "Power Users"
kinds = ["users"]
score_at_least = 90
frequency_at_least = 3
[[profiles.scoring.segments]]
name = "Dormant"
days_inactive_at_least = 180
"""
    )
    users, _ = score(settings_for(scoring=custom))
    assert "Mature" in users["old"]["segments"] and "Mature" not in users["young"]["segments"]
    assert "Dormant" in users["old"]["segments"] and "Dormant" in users["young"]["segments"]


def test_custom_rule_power_users_and_no_suggested() -> None:
    events_csv([("p", "", "Report Viewed", ago(d)) for d in range(3)] + [("q", "", "Report Viewed", ago(0))])
    custom = SCORING.replace("[profiles.scoring]\n", "[profiles.scoring]\nsuggested_segments = false\n") + (
        '[[profiles.scoring.segments]]\nname = "Power Users"\nscore_at_least = 90\nfrequency_at_least = 3\n'
    )
    users, _ = score(settings_for(scoring=custom))
    assert users["p"]["segments"] == ["Power Users"]
    assert users["q"]["segments"] == []


def test_as_of_reproduces_an_earlier_day() -> None:
    events_csv(FIXTURE)
    settings = settings_for()
    users, _ = score(settings, as_of=date(2026, 11, 29))
    # As of 11-29 nothing of 11-30 exists: u7 is not yet a user; u2's 5 views today do not count.
    assert "u7" not in users
    # Window 11-23..11-29: u1 4 x 3 + 5 = 17, u4's Project Created on 11-23 = 9, u2's views are outside.
    assert (users["u1"]["raw"], users["u4"]["raw"], users["u2"]["raw"]) == (17, 9, 0)
    with pytest.raises(SourceError, match="in the future"):
        score(settings, as_of=date(2026, 12, 1))


def test_later_events_do_not_change_an_earlier_day() -> None:
    # As of the newest day the lifetime totals come from the rollup; for an earlier day they are summed
    # from the daily rows. Both must give the same metrics.
    events_csv(FIXTURE)
    settings = settings_for()
    before = score(settings, as_of=AS_OF)
    events_csv(
        [
            ("u1", "A", "Project Created", "2026-12-01T08:00:00Z"),
            ("new", "B", "Login", "2026-12-01T08:00:00Z"),
        ],
        "events/e2.csv",
    )
    after = score(settings, as_of=AS_OF, now=NOW + timedelta(days=1))

    def without_time(rows: dict[str, Any]) -> dict[str, Any]:
        return {key: {k: v for k, v in row.items() if k != "computed_at"} for key, row in rows.items()}

    assert [without_time(t) for t in after] == [without_time(t) for t in before]
    assert after[0]["u1"]["computed_at"] == "2026-11-30T23:59:59Z"  # the end of the as-of day


def test_bad_event_rows_are_reported_not_scored() -> None:
    events_csv(
        [("u1", "A", "Report Viewed", ago(0)), ("", "A", "Report Viewed", ago(0)), ("u2", "A", "", ago(0))]
    )
    events_csv(
        [("u3", "A", "Report Viewed", "not a time"), ("u4", "A", "Report Viewed", "2027-06-01T00:00:00Z")],
        "events/e2.csv",
    )
    settings = settings_for()
    with Scorer(settings.source, settings.profiles, settings.state.directory) as scorer:
        scorer.run(AS_OF, NOW)
        assert scorer.report.bad == {
            "missing user id": 1,
            "missing event name": 1,
            "missing or unreadable timestamp": 1,
            "timestamp more than 24 h in the future": 1,
        }
        users = {r[0] for r in scorer.con.sql("SELECT user_id FROM score_users").fetchall()}
    assert users == {"u1"}


def test_no_usable_event_stops_the_run() -> None:
    events_csv([("", "A", "Report Viewed", ago(0))])
    with pytest.raises(SourceError, match="no usable event"):
        score(settings_for())


def test_config_errors_name_the_field() -> None:
    events_csv([("u1", "A", "Report Viewed", ago(0))])
    with pytest.raises(ConfigError, match="window_days must be 1, 7 or 30"):
        settings_for(scoring=SCORING.replace("window_days = 7", "window_days = 14"))
    with pytest.raises(ConfigError, match="not a weight from 1 to 10"):
        settings_for(scoring=SCORING.replace('"Project Created" = 9', '"Project Created" = 11'))
    with pytest.raises(ConfigError, match=r"have no \[profiles.scoring\]"):
        settings_for(scoring='[[profiles]]\nname = "Default"\n')
    with pytest.raises(ConfigError, match="no condition"):
        settings_for(scoring=SCORING + '[[profiles.scoring.segments]]\nname = "Nothing"\n')
    with pytest.raises(ConfigError, match="neither a feature nor a weighted event"):
        settings_for(
            scoring=SCORING.replace("[profiles.scoring]\n", '[profiles.scoring]\nadoption = ["Login"]\n')
        )


def test_jsonl_events_with_epoch_milliseconds_and_an_email() -> None:
    write(
        "events/e1.jsonl",
        '{"uid": "u1", "account_id": "A", "event": "Report Viewed", "timestamp": 1796029200000, "mail": "a@x.io"}\n'
        '{"uid": "u1", "account_id": "A", "event": "Project Created", "timestamp": 1796032800000, "mail": "b@x.io"}\n',
    )
    extra = '[source.event_columns]\nuser_id = "uid"\nemail = "mail"\n'
    users, _ = score(settings_for("events/*.jsonl", extra=extra))
    # 1796029200000 ms = 2026-11-30 09:00 UTC; the later event's email wins.
    assert users["u1"]["raw"] == 12 and users["u1"]["email"] == "b@x.io"
    assert users["u1"]["last_active"] == datetime(2026, 11, 30, 10, tzinfo=UTC)


def test_missing_event_column_is_named() -> None:
    write("events/e1.csv", "uid,account_id,event,timestamp\nu1,A,Report Viewed,2026-11-30T09:00:00Z\n")
    with pytest.raises(SourceError, match="no column 'user_id' for the event user_id"):
        score(settings_for())
    users, _ = score(settings_for(extra='[source.event_columns]\nuser_id = "uid"\n'))
    assert users["u1"]["score"] == 100
    # A mapped email the events lack would leave every HubSpot contact unmatched, silently: an error too.
    with pytest.raises(
        SourceError, match=r"no column 'mail' for the event email .*\[source\.event_columns\]"
    ):
        score(settings_for(extra='[source.event_columns]\nuser_id = "uid"\nemail = "mail"\n'))


def test_two_profiles_1_and_30_days_go_through_the_stage() -> None:
    import asyncio

    from accoil_sync.sync.runner import execute

    events_csv(FIXTURE)
    profiles = SCORING.replace('name = "Default"\nwindow_days = 7', 'name = "Daily"\nwindow_days = 1') + (
        SCORING.replace('name = "Default"\nwindow_days = 7', 'name = "Monthly"\nwindow_days = 30')
    )
    settings = settings_for(scoring=profiles, extra='as_of = "2026-11-30"')
    result = asyncio.run(execute(settings, deliver=True))
    assert result.source.invalid == 0
    lines = Path("out/deliveries.jsonl").read_text().splitlines()
    u1 = next(json.loads(line) for line in lines if '"key": "u1"' in line)["fields"]
    # Daily: only today's 2 x Project Created (18); Monthly: every scored event of the last 30 days.
    assert (u1["Accoil_Daily_Frequency"], u1["Accoil_Monthly_Frequency"]) == (1, 5)
    assert u1["Accoil_Daily_Score"] == 100 and u1["Accoil_Monthly_Score"] == 100
    assert "Accoil_Daily_Segments" in u1 and "Accoil_Monthly_Segments" in u1


def test_events_more_than_24_hours_ahead_are_bad_rows_by_their_time() -> None:
    # NOW is 18:00: 23:00 the same day is kept and scored; 19:00 the next day (25 h ahead) is a bad row,
    # although its day is within a day of NOW (a day-based rule kept it, and the stage then rejected the
    # user's last_active as in the future).
    soon = (NOW + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    later = (NOW + timedelta(hours=25)).strftime("%Y-%m-%dT%H:%M:%SZ")
    events_csv([("u1", "A", "Report Viewed", soon), ("u2", "A", "Report Viewed", later)])
    settings = settings_for()
    with Scorer(settings.source, settings.profiles, settings.state.directory) as scorer:
        scorer.run(AS_OF, NOW)
        assert scorer.report.bad == {"timestamp more than 24 h in the future": 1}
        rows = scorer.con.sql("SELECT user_id, last_active FROM score_users").fetchall()
    assert rows == [("u1", datetime(2026, 11, 30, 23, tzinfo=UTC))]


@pytest.mark.parametrize("units", [62, 63])  # 62 units are counted as bits of one BIGINT, more by DISTINCT
def test_adoption_with_many_units(units: int) -> None:
    weights = ", ".join(f'"e{i}" = 1' for i in range(units))
    events_csv([("u1", "A", f"e{i}", ago(i % 3)) for i in range(10)] + [("u1", "A", "e61", ago(20))])
    users, accounts = score(
        settings_for(
            scoring=f'[[profiles]]\nname = "Default"\n[profiles.scoring]\nweights = {{ {weights} }}\n'
        )
    )
    assert users["u1"]["adoption_recent"] == round(100 * 10 / units, 1)
    assert users["u1"]["adoption_ever"] == round(100 * 11 / units, 1)
    assert (users["u1"]["frequency"], accounts["A"]["frequency"]) == (3, 3)


@pytest.mark.parametrize("odd_name", ["Zeta", "Ze\x1fta"])  # the second holds the join separator
def test_segment_lists_are_sorted_by_name_whatever_the_rule_order(odd_name: str) -> None:
    rules = [
        SegmentRule.model_validate({"name": name, "kinds": ["users"], "score_at_least": at})
        for name, at in ((odd_name, 10), ("Alpha", 20), ("Mu", 90), ("Beta", 0), ("Alpha", 0))
    ]
    sql = f"SELECT score, {segments_sql(rules)} FROM (VALUES (5), (50), (95), (NULL)) t(score) ORDER BY score"
    assert duckdb.sql(sql).fetchall() == [
        (5, ["Alpha", "Beta"]),
        (50, ["Alpha", "Alpha", "Beta", odd_name]),
        (95, ["Alpha", "Alpha", "Beta", "Mu", odd_name]),
        (None, []),
    ]


@pytest.mark.parametrize("odd_name", ["Zeta", "Ze\x1fta"])
def test_segment_lists_looked_up_by_mask_equal_the_lists_built_per_row(odd_name: str) -> None:
    rules = [
        SegmentRule.model_validate({"name": name, "kinds": ["users"], "score_at_least": at})
        for name, at in ((odd_name, 10), ("Alpha", 20), ("Mu", 90), ("Beta", 0), ("Alpha", 0))
    ]
    rows = "(VALUES (5), (50), (95), (NULL)) t(score)"
    built = duckdb.sql(f"SELECT score, {segments_sql(rules)} FROM {rows} ORDER BY score").fetchall()
    looked_up = duckdb.sql(
        f"SELECT score, l.segments FROM (SELECT score, {segment_mask_sql(rules)} AS mask FROM {rows}) t "
        f"JOIN ({segment_lookup_sql(rules)}) l USING (mask) ORDER BY score"
    ).fetchall()
    assert looked_up == built


def test_segments_looked_up_or_built_per_row_give_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past LOOKUP_RULES rules the lists are built per row: the same rows either way."""
    events_csv(FIXTURE)
    custom = SCORING + '[[profiles.scoring.segments]]\nname = "Band 10"\nscore_at_least = 10\n'
    looked_up = score(settings_for(scoring=custom))
    monkeypatch.setattr("accoil_sync.scoring.metrics.LOOKUP_RULES", 0)
    built = score(settings_for(scoring=custom))
    assert built == looked_up
    assert "Band 10" in looked_up[0]["u1"]["segments"]


def test_account_details_from_a_file_or_a_duckdb_query() -> None:
    """``source.accounts`` beside events: each scored account gets its name and domain (the non-empty
    value where an export repeats an account); an account without details keeps none."""
    events_csv(FIXTURE)
    write("accounts.csv", "id,company,website\nA,Acme,acme.io\nA,,\nZ,Unused,unused.io\n")
    settings = settings_for(
        extra='accounts = "accounts.csv"\n[source.columns]\naccount_id = "id"\n'
        'name = "company"\ndomain = "website"'
    )
    _, accounts = score(settings)
    assert (accounts["A"]["name"], accounts["A"]["domain"]) == ("Acme", "acme.io")
    assert "Z" not in accounts  # details alone do not make an account
    assert all(a["name"] is None for key, a in accounts.items() if key != "A")

    import duckdb

    with duckdb.connect("warehouse.duckdb") as con:
        con.execute("CREATE TABLE groups AS SELECT 'A' AS group_id, 'Acme DB' AS name, 'acme.com' AS website")
        con.execute("CREATE TABLE events AS SELECT * FROM read_csv('events/e1.csv')")
    sql = settings_for(
        extra='events_from = "duckdb"\ndatabase = "warehouse.duckdb"\n'
        'accounts = "SELECT group_id AS account_id, name, website AS domain FROM groups"',
    ).source.model_copy(update={"events": "SELECT * FROM events"})
    with Scorer(sql, settings.profiles, Path("state-db")) as scorer:
        scorer.run(AS_OF, NOW)
        row = scorer.con.sql("SELECT name, domain FROM score_accounts WHERE account_id = 'A'").fetchall()
    assert row == [("Acme DB", "acme.com")]


def test_account_details_errors_name_the_setting() -> None:
    events_csv(FIXTURE)
    write("accounts.csv", "id,score\nA,4\n")
    with pytest.raises(SourceError, match=r"source.accounts: no account_id column .*\[source.columns\]"):
        score(settings_for(extra='accounts = "accounts.csv"'))
    write("accounts.csv", "account_id,score\nA,4\n")
    with pytest.raises(SourceError, match=r"source\.accounts: no name or domain column"):
        score(settings_for(extra='accounts = "accounts.csv"'))
    with pytest.raises(SourceError, match=r"source\.accounts: no file matches"):
        score(settings_for(extra='accounts = "nowhere/*.csv"'))
    with pytest.raises(ConfigError, match=r"remove source\.users"):
        settings_for(extra='users = "users.csv"')


def test_account_details_never_make_an_events_source_remove_accounts() -> None:
    """An events source removes nothing: its objects are everyone it ever saw. Naming the accounts'
    details must not change that, even under removal = "clear" when a rebuilt rollup lacks an account."""
    import asyncio

    from accoil_sync.sync.runner import execute

    events_csv(FIXTURE)
    write("accounts.csv", "account_id,name\nA,Acme\nB,Beta\nC,Gamma\n")
    settings = settings_for(extra='accounts = "accounts.csv"\nas_of = "2026-11-30"')
    settings = settings.model_copy(
        update={
            "destinations": settings.destinations.model_copy(
                update={"jsonl": settings.destinations.jsonl.model_copy(update={"removal": "clear"})}
            )
        }
    )
    assert asyncio.run(execute(settings, deliver=True)).exit_code == 0
    events_csv([r for r in FIXTURE if r[1] != "C"])  # the file changed: the rollup is rebuilt without C
    result = asyncio.run(execute(settings, deliver=True, allow_mass_change=True))
    assert result.plans["jsonl"].counts[ObjectKind.ACCOUNT].clear == 0 and not result.withheld
    assert all('"op": "clear"' not in line for line in Path("out/deliveries.jsonl").read_text().splitlines())


def test_account_details_without_a_domain_column_or_rows_are_read_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events_csv(FIXTURE)
    write("accounts.csv", "account_id,name,website\nA,Acme,acme.io\n")  # domain renamed upstream
    _, accounts = score(settings_for(extra='accounts = "accounts.csv"'))
    assert accounts["A"]["name"] == "Acme" and accounts["A"]["domain"] is None
    assert "source.accounts has no domain column (looked for 'domain'" in caplog.text
    write("accounts.csv", "account_id,name,domain\n")
    score(settings_for(extra='accounts = "accounts.csv"'))
    assert "source.accounts holds no account with an id" in caplog.text


def test_the_cli_shows_the_fix_in_brackets_literally() -> None:
    """Error texts name settings in TOML's brackets ([source.columns]); the terminal must show them, not
    read them as markup and drop them."""
    from typer.testing import CliRunner

    from accoil_sync.cli import app

    events_csv(FIXTURE)
    write("accounts.csv", "acct,name\nA,Acme\n")
    settings_for(extra='accounts = "accounts.csv"')
    result = CliRunner().invoke(app, ["plan", "-c", "accoil-sync.toml"])
    assert result.exit_code == 2
    assert "map it with [source.columns]" in result.output.replace("\n", " ")
