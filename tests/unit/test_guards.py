"""Guards (issue 15): a broken export never blanks or wipes what the vendors hold.

Each case is tried as a new user would: a first sync that delivers, then the broken input, then what is
sent (nothing cleared), what is said, and the exit code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.serve.alerts import assess
from accoil_sync.sync.runner import EXIT_HELD, EXIT_INTERRUPTED, EXIT_INVALID_ROWS, EXIT_OK, execute
from accoil_sync.traits import ObjectKind, TraitsEncoder
from accoil_sync.traits.encoders import Encoder, HubSpotEncoder, IntercomEncoder
from tests.conftest import WriteConfig, write
from tests.unit.test_sync import FakeConnector, run

HEADER = "user_id,score,segments,activation\n"
ROWS = "u1,10,A;B,50\nu2,20,A,60\nu3,30,,70\nu4,40,B,80\nu5,50,,90\nu6,60,A,10\n"
CLEAR = 'removal = "clear"\n'


@pytest.fixture
def users(tmp_path: Path) -> Path:
    return write(tmp_path / "users.csv", HEADER + ROWS)


def synced(settings: Settings) -> None:
    first = FakeConnector(max_batch=50)
    assert run(settings, first).exit_code == EXIT_OK
    assert len(first.sent) == 6


def cleared(fake: FakeConnector) -> list[tuple[str, str]]:
    """(key, field) of every clearing write: a clear op, or a field set to None."""
    return [(c.key, f) for c in fake.sent for f, v in c.fields.items() if c.op == "clear" or v is None]


@pytest.mark.parametrize("removal", ["keep", "clear"])
def test_a_metric_column_renamed_upstream_clears_nothing(
    users: Path, make_settings: WriteConfig, removal: str
) -> None:
    settings = make_settings(extra=f'removal = "{removal}"\n')
    synced(settings)
    write(users, "user_id,engagement_score,segments,activation\n" + ROWS.replace("u1,10", "u1,140"))
    fake = FakeConnector()
    result = run(settings, fake)
    assert fake.sent == []
    (error,) = result.errors
    assert error.scope == "file" and "closest match: 'engagement_score'" in error.reason
    assert result.source.by_kind[ObjectKind.USER].file_errors == 1
    if removal == "clear":
        assert "1 file-level error(s)" in result.withheld["user"]
        assert result.exit_code == EXIT_HELD and result.kept == {"jsonl": 6}
    else:
        assert result.exit_code == EXIT_INVALID_ROWS


def test_a_typo_in_the_mapping_from_the_environment_clears_nothing(
    users: Path, make_settings: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced(make_settings(extra=CLEAR))
    monkeypatch.setenv("ACCOIL_SYNC_SOURCE__COLUMNS__SCORE", "scor")
    fake = FakeConnector()
    result = run(make_settings(extra=CLEAR), fake)
    assert fake.sent == []
    assert "closest match: 'score'" in result.errors[0].reason
    assert result.exit_code == EXIT_HELD


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "1 file-level error(s)"),  # zero bytes
        (HEADER, "read as empty"),  # a header and no rows
        ("userid,score,segments,activation\n" + ROWS, "1 file-level error(s)"),  # the key column misnamed
    ],
    ids=["zero-byte", "header-only", "misnamed-key"],
)
def test_an_empty_or_keyless_users_file_removes_nothing(
    users: Path, make_settings: WriteConfig, text: str, words: str
) -> None:
    settings = make_settings(extra=CLEAR)
    synced(settings)
    users.write_text(text)
    fake = FakeConnector()
    result = run(settings, fake)
    assert fake.sent == []
    assert words in result.withheld["user"]
    assert result.exit_code == EXIT_HELD and result.kept == {"jsonl": 6}
    assert "absent from the source not removed" in str(assess(result, None, 0.05).problem)
    # once the file is whole again, nothing was lost and nothing needs sending
    users.write_text(HEADER + ROWS)
    again = FakeConnector()
    assert run(settings, again).exit_code == EXIT_OK and again.sent == []


def test_a_source_much_smaller_than_last_time_removes_nothing_until_allowed(
    users: Path, make_settings: WriteConfig
) -> None:
    settings = make_settings(extra=CLEAR)
    synced(settings)
    write(users, HEADER + "u1,10,A;B,50\nu2,20,A,60\n")
    fake = FakeConnector()
    result = run(settings, fake, deliver=False)
    assert "2 objects, 33% of the 6" in result.withheld["user"]
    assert result.exit_code == EXIT_HELD
    allowed = FakeConnector(max_batch=50)
    run(settings, allowed, allow_mass_change=True)
    assert sorted(c.key for c in allowed.sent if c.op == "clear") == ["u3", "u4", "u5", "u6"]


@pytest.mark.parametrize(
    ("text", "words"),
    [(HEADER, "read as empty"), (HEADER + "u1,10,A;B,50\n", "1 objects, 17% of the 6")],
)
def test_an_emptied_export_is_reported_under_keep_too(
    users: Path, make_settings: WriteConfig, text: str, words: str
) -> None:
    """With removal = "keep" an empty export removes nothing anyway, but a scheduled run must not call it
    a normal run: it warns and exits 4, like any other source problem, until the export is whole or the
    new size is allowed."""
    settings = make_settings()
    synced(settings)
    users.write_text(text)
    fake = FakeConnector()
    result = run(settings, fake)
    assert cleared(fake) == [] and not result.withheld and not result.kept
    assert words in result.shrunk["user"]
    assert result.exit_code == EXIT_INVALID_ROWS and result.status == "partial"
    alert = assess(result, None, 0.05)  # serve posts it, once per kind (the signature has no counts)
    assert words in str(alert.problem) and alert.signature == "shrunk: user"
    users.write_text(HEADER + ROWS)
    again = FakeConnector()
    assert run(settings, again).exit_code == EXIT_OK and again.sent == []
    users.write_text(text)
    allowed = run(settings, FakeConnector(), allow_mass_change=True)
    assert allowed.exit_code == EXIT_OK and not allowed.shrunk


ENCODERS: dict[str, tuple[Encoder, dict[str, object], dict[str, object]]] = {
    # encoder, what the held run sends for u1, what the run after the fix sends
    "segment": (TraitsEncoder(), {"Accoil_Default_Score": 11}, {"Accoil_ProductUsage_Score": 34}),
    "hubspot": (HubSpotEncoder(), {"accoil_default_score": "11"}, {"accoil_productusage_score": "34"}),
    # Intercom's tags field holds both profiles' segments: it is not shrunk while a profile is held
    "intercom": (
        IntercomEncoder("Accoil: "),
        {"Accoil_Default_Score": 11},
        {"Accoil_ProductUsage_Score": 34},
    ),
}


@pytest.mark.parametrize("vendor", sorted(ENCODERS))
def test_an_invalid_row_in_one_profile_keeps_that_profiles_values(
    tmp_path: Path, make_settings: WriteConfig, vendor: str
) -> None:
    encoder, held_fields, fixed_fields = ENCODERS[vendor]

    def connector() -> FakeConnector:
        fake = FakeConnector()
        fake.encoder = encoder  # type: ignore[assignment]
        return fake

    profiles = '[[profiles]]\nname = "Default"\n[[profiles]]\nname = "product usage"\n'
    source = write(
        tmp_path / "users.csv",
        "user_id,score_name,score,segments\nu1,Default,10,A\nu1,product usage,33,B\nu2,Default,20,A\n",
    )
    settings = make_settings(extra=profiles)
    run(settings, connector())
    write(
        source, "user_id,score_name,score,segments\nu1,Default,11,A\nu1,product usage,930,\nu2,Default,20,A\n"
    )
    fake = connector()
    result = run(settings, fake)
    assert [(c.key, c.fields) for c in fake.sent] == [("u1", held_fields)]
    assert result.plans["jsonl"].counts[ObjectKind.USER].held == 1
    assert result.exit_code == EXIT_INVALID_ROWS
    # fixed at the source: the held profile is planned again and only its real change is sent
    write(
        source, "user_id,score_name,score,segments\nu1,Default,11,A\nu1,product usage,34,B\nu2,Default,20,A\n"
    )
    fixed = connector()
    assert run(settings, fixed).exit_code == EXIT_OK
    assert [(c.key, c.fields) for c in fixed.sent] == [("u1", fixed_fields)]


def test_an_invalid_row_never_removes_its_object(users: Path, make_settings: WriteConfig) -> None:
    settings = make_settings(extra=CLEAR)
    synced(settings)
    write(users, HEADER + ROWS.replace("u3,30", "u3,930"))
    fake = FakeConnector()
    result = run(settings, fake)
    assert fake.sent == [] and cleared(fake) == []
    assert result.exit_code == EXIT_INVALID_ROWS and "u3" in str(result.errors[0].key)


def test_full_refresh_makes_the_vendor_equal_the_source(users: Path, make_settings: WriteConfig) -> None:
    settings = make_settings()
    synced(settings)
    write(users, HEADER + ROWS.replace("u1,10,A;B,50", "u1,10,,"))
    fake = FakeConnector(max_batch=50)
    run(settings, fake, full_refresh=True)
    by_key = {c.key: c.fields for c in fake.sent}
    assert len(by_key) == 6  # every object is sent again
    assert by_key["u1"] == {
        "Accoil_Default_Score": 10,
        "Accoil_Default_Segments": None,
        "Accoil_Default_Activation": None,
    }
    quiet = FakeConnector()
    run(settings, quiet)
    assert quiet.sent == []


def many(n: int, score: int = 10) -> str:
    return HEADER + "".join(f"u{i},{score},A,50\n" for i in range(n))


def test_every_score_moving_is_held_in_plan_and_sync_alike_and_goes_through_when_allowed(
    users: Path, make_settings: WriteConfig
) -> None:
    settings = make_settings()
    write(users, many(20))
    run(settings, FakeConnector())
    write(users, many(20, score=11))
    planned = run(settings, FakeConnector(), deliver=False)
    fake = FakeConnector()
    synced_result = run(settings, fake)
    assert fake.sent == [] and synced_result.exit_code == planned.exit_code == EXIT_HELD
    plan_hold = planned.to_json()["destinations"]["jsonl"]["held"]
    sync_hold = synced_result.to_json()["destinations"]["jsonl"]["held"]
    assert plan_hold == sync_hold
    (hold,) = sync_hold
    assert (hold["setting"], hold["count"], hold["known"]) == ("max_changed_share", 20, 20)
    assert "20 of the 20 users it holds would be changed (100.0% > 90%" in hold["message"]
    assert "--allow-mass-change" in hold["message"] and "'u0'" in hold["message"]
    assert "held by a safety guard" in str(assess(synced_result, None, 0.05).problem)
    allowed = FakeConnector(max_batch=50)
    assert run(settings, allowed, allow_mass_change=True).exit_code == EXIT_OK
    assert len(allowed.sent) == 20


def test_too_many_removals_are_held_with_a_sample(users: Path, make_settings: WriteConfig) -> None:
    settings = make_settings(extra=CLEAR + "max_removed_count = 5\n")
    write(users, many(20))
    run(settings, FakeConnector())
    write(users, many(14))  # 70% of last time: not "much smaller", but 6 removals > 5
    fake = FakeConnector()
    result = run(settings, fake)
    assert fake.sent == [] and result.exit_code == EXIT_HELD
    (hold,) = result.holds["jsonl"]
    assert (hold.setting, hold.count) == ("max_removed_share", 6)  # 30% > 20% is reported first
    assert hold.sample == ("u14", "u15", "u16", "u17", "u18")


def test_sanity_warnings(tmp_path: Path, make_settings: WriteConfig) -> None:
    from datetime import UTC, datetime, timedelta

    soon = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    past = "2026-01-05T00:00:00Z"
    write(
        tmp_path / "users.csv",
        "user_id,score,activation,frequency,last_active\n"
        + "".join(f"u{i},0.{i + 1},40,{i % 3},{soon if i == 0 else past}\n" for i in range(6)),
    )
    result = run(make_settings(), FakeConnector(), deliver=False)
    text = "\n".join(result.warnings)
    assert "1 users row(s) have a last_active date in the future" in text
    assert "every score of the users is between 0 and 1" in text
    assert "activation is 40 in all 6 users rows" in text
    assert "profile 'Default' has no window_days set" in text
    assert result.to_json()["warnings"] == result.warnings


def test_an_interrupted_run_has_its_own_code_and_still_a_result(
    users: Path, make_settings: WriteConfig
) -> None:
    settings = make_settings()
    halt = asyncio.Event()
    halt.set()

    def factory(name: str, s: Settings, run_id: str) -> FakeConnector:
        return FakeConnector()

    result = asyncio.run(execute(settings, deliver=True, connector_factory=factory, halt=halt))  # type: ignore[arg-type]
    assert result.exit_code == EXIT_INTERRUPTED and result.status == "interrupted"
    assert result.to_json()["exit_code"] == EXIT_INTERRUPTED


def test_invalid_rows_can_be_configured_not_to_fail_the_run(users: Path, make_settings: WriteConfig) -> None:
    write(users, HEADER + ROWS.replace("u3,30", "u3,930"))
    assert run(make_settings(), FakeConnector()).exit_code == EXIT_INVALID_ROWS
    relaxed = make_settings(extra="[safety]\nfail_on_invalid_rows = false\n")
    assert run(relaxed, FakeConnector()).exit_code == EXIT_OK


async def test_serve_alerts_say_why_a_destination_was_held(users: Path, make_settings: WriteConfig) -> None:
    import json

    import httpx

    from accoil_sync.serve.alerts import Alerter
    from accoil_sync.serve.scheduler import Scheduler
    from accoil_sync.sync.state import StateStore

    settings = make_settings(extra=CLEAR)
    posts: list[str] = []

    def webhook(request: httpx.Request) -> httpx.Response:
        posts.append(json.loads(request.content)["text"])
        return httpx.Response(200, text="ok")

    async def scheduled() -> FakeConnector:
        fake = FakeConnector(max_batch=50)
        store = StateStore(settings.state.path)
        alerter = Alerter(
            "https://hooks.example.com/T0/B0/x",
            0.05,
            store,
            client=httpx.AsyncClient(transport=httpx.MockTransport(webhook)),
        )
        scheduler = Scheduler(settings, alerter=alerter, connector_factory=lambda *_: fake)  # type: ignore[arg-type,return-value]
        scheduler.trigger("schedule")
        assert scheduler.current is not None
        await asyncio.wait_for(asyncio.shield(scheduler.current), 30)
        await scheduler.shutdown(0)
        store.close()
        return fake

    assert len((await scheduled()).sent) == 6 and posts == []
    await asyncio.to_thread(users.write_text, HEADER)  # the export came out empty
    assert (await scheduled()).sent == []
    (alert,) = posts
    assert "held by a safety guard" in alert and "the users source read as empty" in alert
    assert "6 object(s) absent from the source not removed" in alert


def test_sigterm_during_a_cli_sync_stops_between_batches_and_is_recorded_as_interrupted(
    users: Path, make_settings: WriteConfig
) -> None:
    import os
    import signal
    from collections.abc import Sequence

    from accoil_sync import cli_run
    from accoil_sync.connectors import Change, Outcome
    from accoil_sync.sync.state import StateStore

    class Terminated(FakeConnector):
        async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
            if not self.batches:
                os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler's kill would
                await asyncio.sleep(0.05)
            return await super().deliver(kind, batch)

    fake = Terminated(max_batch=2)
    settings = make_settings()
    result = cli_run.run(settings, deliver=True, connector_factory=lambda *_: fake)
    assert result.halted and result.exit_code == EXIT_INTERRUPTED
    assert 0 < len(fake.sent) < 6  # the batch in flight finished, the rest was left
    assert result.to_json()["status"] == "interrupted"
    store = StateStore(settings.state.path)
    (last,) = store.runs(1)
    store.close()
    assert (last.status, last.exit_code) == ("interrupted", EXIT_INTERRUPTED)
    rest = FakeConnector(max_batch=50)
    run(settings, rest)
    assert len(rest.sent) == 6 - len(fake.sent)


def test_the_card_keeps_a_held_profile_it_showed(tmp_path: Path, make_settings: WriteConfig) -> None:
    """The card stores whole records: an invalid row must not drop its profile from what the card shows."""
    import sqlite3

    import orjson

    profiles = '[[profiles]]\nname = "Default"\n[[profiles]]\nname = "product usage"\n'
    source = write(tmp_path / "users.csv", "user_id,score_name,score\nu1,Default,10\nu1,product usage,33\n")
    settings = make_settings(extra="[destinations.card]\nenabled = true\n" + profiles)

    def card() -> dict[str, object]:
        db = sqlite3.connect(settings.state.path)
        (body,) = db.execute("SELECT record FROM card_objects WHERE key = 'u1'").fetchone()
        db.close()
        return dict(orjson.loads(body)["metrics"])

    sync = execute(settings, deliver=True, destinations=["card"])
    assert asyncio.run(sync).exit_code == EXIT_OK
    write(source, "user_id,score_name,score\nu1,Default,11\nu1,product usage,930\n")
    assert asyncio.run(execute(settings, deliver=True, destinations=["card"])).exit_code == EXIT_INVALID_ROWS
    assert card() == {"Default": {"score": 11}, "ProductUsage": {"score": 33}}


def test_a_second_signal_stops_at_once_and_is_still_recorded_as_interrupted(
    users: Path, make_settings: WriteConfig
) -> None:
    import os
    import signal
    from collections.abc import Sequence

    import typer

    from accoil_sync import cli_run
    from accoil_sync.connectors import Change, Outcome
    from accoil_sync.sync.state import StateStore

    class Stuck(FakeConnector):
        async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(5)  # a vendor that does not answer
            return await super().deliver(kind, batch)

    settings = make_settings()
    with pytest.raises(typer.Exit) as stopped:
        cli_run.run(settings, deliver=True, connector_factory=lambda *_: Stuck())
    assert stopped.value.exit_code == EXIT_INTERRUPTED
    store = StateStore(settings.state.path)
    (last,) = store.runs(1)
    store.close()
    assert (last.status, last.exit_code) == ("interrupted", EXIT_INTERRUPTED)


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """The CLI, run in-process, sets up the package's log handlers on streams that close after it."""
    import logging

    names = ("accoil_sync", "httpx", "httpcore", "uvicorn")
    saved = {
        n: (list(logging.getLogger(n).handlers), logging.getLogger(n).level, logging.getLogger(n).propagate)
        for n in names
    }
    yield
    for n, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(n)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.mark.usefixtures("restored_logging")
def test_the_cli_prints_the_same_verdict_in_plan_and_sync_and_allow_mass_change_lets_it_through(
    users: Path, make_settings: WriteConfig
) -> None:
    from typer.testing import CliRunner

    from accoil_sync.cli import app

    make_settings()  # writes accoil-sync.toml (jsonl destination) in the working directory
    write(users, many(20))
    cli = CliRunner()
    assert cli.invoke(app, ["sync", "-c", "accoil-sync.toml"]).exit_code == EXIT_OK
    write(users, many(20, score=42))
    planned = cli.invoke(app, ["plan", "-c", "accoil-sync.toml"])
    synced_out = cli.invoke(app, ["sync", "-c", "accoil-sync.toml"])
    assert planned.exit_code == synced_out.exit_code == EXIT_HELD
    words = "20 of the 20 users it holds would be changed (100.0% > 90%"
    assert words in " ".join(planned.stdout.split()) and words in " ".join(synced_out.stdout.split())
    assert "would be held:" in planned.stdout and "held:" in synced_out.stdout
    allowed = cli.invoke(app, ["sync", "-c", "accoil-sync.toml", "--allow-mass-change", "--json"])
    assert allowed.exit_code == EXIT_OK
    assert '"ok": 20' in allowed.stdout


def test_metrics_computed_from_events_are_not_held_for_moving_daily_unless_asked() -> None:
    """With an events source most objects' metrics move every day (the windows slide, the P90 anchor
    moves): the changed-share default would hold every scheduled run. Set explicitly, it applies; the
    removal thresholds always do."""
    from accoil_sync.config.models import JsonlDestination
    from accoil_sync.sync.guards import Preview, thresholds

    daily = {ObjectKind.ACCOUNT: Preview(known=14, changed=13)}
    assert [h.setting for h in thresholds("jsonl", JsonlDestination(), daily)] == ["max_changed_share"]
    assert thresholds("jsonl", JsonlDestination(), daily, computed_from_events=True) == []
    explicit = JsonlDestination(max_changed_share=0.9)
    assert [h.setting for h in thresholds("jsonl", explicit, daily, computed_from_events=True)] == [
        "max_changed_share"
    ]
    emptied = {ObjectKind.ACCOUNT: Preview(known=14, removed=10)}
    assert [
        h.setting for h in thresholds("jsonl", JsonlDestination(), emptied, computed_from_events=True)
    ] == ["max_removed_share"]


@pytest.mark.usefixtures("restored_logging")
def test_sync_names_the_objects_it_cleared(users: Path, make_settings: WriteConfig) -> None:
    """After a removal a person checks which records were emptied: sync names them, on screen and in
    --json (plan's samples show them before)."""
    from typer.testing import CliRunner

    from accoil_sync.cli import app

    make_settings(extra=CLEAR)
    write(users, many(20))
    cli = CliRunner()
    assert cli.invoke(app, ["sync", "-c", "accoil-sync.toml"]).exit_code == EXIT_OK
    write(users, many(18))
    shown = cli.invoke(app, ["sync", "-c", "accoil-sync.toml"])
    assert shown.exit_code == EXIT_OK, shown.stdout
    assert "jsonl: cleared, gone from the source: user u18, user u19" in " ".join(shown.stdout.split())
    write(users, many(17))
    data = json.loads(cli.invoke(app, ["sync", "-c", "accoil-sync.toml", "--json"]).stdout)
    assert data["destinations"]["jsonl"]["delivery"]["cleared_sample"] == [{"kind": "user", "key": "u17"}]
