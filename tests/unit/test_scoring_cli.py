"""`accoil-sync score`: written metrics a files source reads back unchanged, --explain, --as-of errors."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import write
from tests.unit.test_cli import cli
from tests.unit.test_scoring import FIXTURE, events_csv, settings_for


def test_score_writes_metrics_a_files_source_reads_back() -> None:
    events_csv(FIXTURE)
    settings_for()
    done = cli("score", "--as-of", "2026-11-30", "--format", "csv", "-o", "out", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows"] == {"users": 10, "accounts": 3}
    assert summary["as_of"] == "2026-11-30" and summary["rollup"] == "full"
    header, *rows = Path("out/users.csv").read_text().splitlines()
    assert header == (
        "user_id,account_id,email,score_name,score,activation,adoption_recent,adoption_ever,segments,"
        "last_active,frequency,computed_at"
    )
    assert "u1,A,,Default,100,100.0,100.0,100.0,Active Today;Mature;Most Engaged,2026-11-30T09:00:00Z,4," in (
        "\n".join(rows)
    )
    write(
        "files.toml",
        """
        [source]
        users = "out/users.csv"
        accounts = "out/accounts.csv"
        [state]
        path = "state2/state.db"
        [destinations.jsonl]
        enabled = true
        path = "out2/deliveries.jsonl"
        """,
    )
    planned = cli("plan", "-c", "files.toml", "--json")
    assert planned.returncode == 0, planned.stderr
    source = json.loads(planned.stdout)["source"]
    assert (source["user"]["valid"], source["user"]["invalid"], source["account"]["valid"]) == (10, 0, 3)


def test_explain_names_the_top_events_and_the_next_band() -> None:
    events_csv(FIXTURE)
    settings_for()
    done = cli("score", "--as-of", "2026-11-30", "--explain", "u2", "--explain", "A")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "user u2 [Default]: score 52 (raw 15 against the P90 anchor 29); previous period 19" in text
    assert "Report Viewed: 5 x weight 3 = 15 (100%)" in text
    # 75 needs 100 x raw / 29 >= 74.5: raw 21.6, 6.6 more, e.g. 1 x Project Created.
    assert "next band: Most Engaged at 75, 23 point(s) away" in text
    assert "6.6 weighted point(s) more in the window, e.g. 1 x Project Created (weight 9)" in text
    assert "account A [Default]: score 76" in text
    assert "Project Created: 2 x weight 9 = 18" in text
    missing = cli("score", "--as-of", "2026-11-30", "--explain", "nobody")
    assert missing.returncode == 1 and "'nobody' is neither a user nor an account" in missing.stderr


def test_as_of_and_score_errors_name_the_option() -> None:
    events_csv(FIXTURE)
    settings_for()
    bad = cli("score", "--as-of", "30/11/2026")
    assert bad.returncode == 2 and "--as-of" in bad.stderr and "not a date" in bad.stderr
    future = cli("sync", "--as-of", "2999-01-01")
    assert future.returncode == 2 and "in the future" in future.stderr
    write("files.toml", '[source]\nusers = "u.csv"\n')
    wrong = cli("score", "-c", "files.toml")
    assert wrong.returncode == 2 and "source.kind" in wrong.stderr
    plan = cli("plan", "-c", "files.toml", "--as-of", "2026-11-30")
    assert plan.returncode == 2 and "only an events source" in plan.stderr


def test_plan_samples_say_why() -> None:
    events_csv(FIXTURE)
    settings_for()
    assert cli("sync", "--as-of", "2026-11-29").returncode == 0
    # The next day changes all 3 accounts of the fixture: past the mass-change guard (issue 15), allowed.
    planned = cli("plan", "--as-of", "2026-11-30", "--json", "--allow-mass-change")
    assert planned.returncode == 0, planned.stderr
    explanations = {(e["kind"], e["key"]): e for e in json.loads(planned.stdout)["explanations"]}
    u2 = explanations[("user", "u2")]
    assert (u2["score"], u2["p90"], u2["next_band"], u2["top"][0]["event"]) == (
        52,
        29,
        "Most Engaged",
        "Report Viewed",
    )
    text = cli("plan", "--as-of", "2026-11-30", "--allow-mass-change").stdout
    assert "why: user u2 [Default]: score 52 (raw 15 against the P90 anchor 29)" in text
