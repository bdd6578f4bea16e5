"""Segment connector against the emulator: exact traits, zero re-sends, confirmed and de-duplicated delivery."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.connectors import Change, Connector, Outcome, build_connector
from accoil_sync.connectors.segment import SegmentConnector, anonymous_group_id
from accoil_sync.emulator import Emulator, Faults
from accoil_sync.sources import Stage, load_stage
from accoil_sync.sync.runner import RunResult, execute
from accoil_sync.traits import ObjectKind, TraitsEncoder
from tests.conftest import WriteConfig, write
from tests.integration.conftest import destination_section

HEADER = "user_id,email,score,segments,activation,last_active,frequency\n"


class SimulatedKill(BaseException):
    pass


@pytest.fixture
def segment_settings(served: str, make_settings: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> WriteConfig:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY", "wk_test_key")

    def make(
        users: str | None = "users.csv", accounts: str | None = None, extra: str = "", **segment: object
    ) -> Settings:
        return make_settings(users, accounts, extra + destination_section(served, "segment", **segment))

    return make


def sync(settings: Settings, factory: object = None) -> RunResult:
    kwargs = {"connector_factory": factory} if factory else {}
    return asyncio.run(execute(settings, deliver=True, destinations=["segment"], **kwargs))  # type: ignore[arg-type]


def test_example_lands_every_trait_exactly(
    examples: Path, segment_settings: WriteConfig, emulator: Emulator
) -> None:
    settings = segment_settings(users="examples/users.csv", accounts="examples/accounts.csv")
    result = sync(settings)
    assert result.deliveries["segment"].counts == {"ok": 11}
    stage = load_stage(Stage(Path("tmp-stage"), settings.profiles, "check"), settings.source)
    encoder = TraitsEncoder()
    users = stage.records(ObjectKind.USER, [f"u_00{n}" for n in range(1, 8)])
    accounts = stage.records(ObjectKind.ACCOUNT, ["acc_acme", "acc_globex", "acc_initech", "acc_hooli"])
    stage.close()
    state = emulator.segment.state()
    assert state["users"] == {key: encoder.encode(r) for key, r in users.items()}
    assert state["groups"] == {key: encoder.encode(r) for key, r in accounts.items()}
    assert state["users"]["u_001"]["Accoil_Default_Segments"] == ["Champions", "Most Engaged"]
    assert state["groups"]["acc_acme"]["Accoil_Default_TotalUsers"] == 3
    assert state["dropped"] == {}
    requests_before = state["requests"]["total"]
    again = sync(settings)
    assert again.deliveries["segment"].counts == {}
    assert emulator.segment.state()["requests"]["total"] == requests_before  # zero messages, zero requests


def test_changed_score_sends_exactly_the_changed_objects(
    segment_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    users = write(tmp_path / "users.csv", HEADER + "".join(f"u{n},,{n},,,," + "\n" for n in range(10)))
    settings = segment_settings()
    sync(settings)
    assert emulator.segment.state()["messages"] == 10
    write(users, HEADER + "".join(f"u{n},,{n + (n in (3, 7))},,,," + "\n" for n in range(10)))
    result = sync(settings)
    assert result.deliveries["segment"].counts == {"ok": 2}
    messages = emulator.segment.messages[-2:]
    assert [(m["userId"], m["traits"]) for m in messages] == [
        ("u3", {"Accoil_Default_Score": 4}),
        ("u7", {"Accoil_Default_Score": 8}),
    ]


def test_500_then_200_delivers_once(
    segment_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    write(tmp_path / "users.csv", HEADER + "u1,,10,,,,\nu2,,20,,,,\n")
    emulator.set_faults("segment", Faults(fail_next=[500]))
    result = sync(segment_settings())
    assert result.exit_code == 0
    state = emulator.segment.state()
    assert state["requests"]["by_status"] == {"500": 1, "200": 1}
    assert state["messages"] == 2 and state["duplicates_dropped"] == 0


def test_kill_between_ack_and_commit_resends_the_same_ids(
    segment_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    write(tmp_path / "users.csv", HEADER + "u1,,10,,,,\nu2,,20,,,,\nu3,,30,,,,\n")
    settings = segment_settings()

    class KilledAfterAck(SegmentConnector):
        async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
            await super().deliver(kind, batch)
            raise SimulatedKill  # Segment has the batch; the state commit never happens

    def killing(name: str, s: Settings, run_id: str) -> Connector:
        return KilledAfterAck(s.destinations.segment)

    with pytest.raises(SimulatedKill):
        sync(settings, killing)
    first_ids = [m["messageId"] for m in emulator.segment.messages]
    assert len(first_ids) == 3
    result = sync(settings)
    assert result.deliveries["segment"].counts == {"ok": 3}
    state = emulator.segment.state()
    assert state["duplicates_dropped"] == 3  # the same ids again: Segment keeps one copy
    assert state["messages"] == 3
    assert sync(settings).deliveries["segment"].counts == {}


def test_a_b_a_delivers_three_times(
    segment_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    users = tmp_path / "users.csv"
    settings = segment_settings()
    for score in (10, 20, 10):
        write(users, HEADER + f"u1,,{score},,,,\n")
        assert sync(settings).deliveries["segment"].counts == {"ok": 1}
    state = emulator.segment.state()
    assert state["messages"] == 3 and state["duplicates_dropped"] == 0
    assert len({m["messageId"] for m in emulator.segment.messages}) == 3
    assert state["users"]["u1"]["Accoil_Default_Score"] == 10


def test_oversize_message_is_reported_and_others_delivered(
    segment_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    huge = ";".join(f"segment {n:03d} " + "x" * 230 for n in range(150))
    write(tmp_path / "users.csv", HEADER + f'u1,,10,"{huge}",,,\nu2,,20,,,,\n')
    settings = segment_settings()
    result = sync(settings)
    assert result.exit_code == 1
    report = result.deliveries["segment"]
    assert report.counts == {"ok": 1, "rejected": 1}
    (reason,) = report.reason_texts()
    assert "over Segment's 32 KB limit" in reason
    assert set(emulator.segment.state()["users"]) == {"u2"}


def test_2600_objects_never_more_than_2500_events_per_batch(
    segment_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    write(tmp_path / "users.csv", HEADER + "".join(f"u{n},,1,,,," + "\n" for n in range(2600)))
    result = sync(segment_settings())
    assert result.deliveries["segment"].counts == {"ok": 2600}
    state = emulator.segment.state()
    assert 0 < state["largest_batch"] <= 2500 and state["messages"] == 2600 and state["dropped"] == {}


def test_group_uses_a_stable_anonymous_id(
    segment_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    write(tmp_path / "accounts.csv", "account_id,score,active_users,total_users\nacc_1,50,2,3\n")
    sync(segment_settings(users=None, accounts="accounts.csv", group_mode="synthetic"))
    (message,) = emulator.segment.messages
    assert message["type"] == "group" and message["groupId"] == "acc_1"
    assert message["anonymousId"] == anonymous_group_id("acc_1") and "userId" not in message
    assert message["context"]["library"]["name"] == "accoil-sync"


def test_revoked_write_key_stops_with_exit_3(
    segment_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    write(tmp_path / "users.csv", HEADER + "u1,,10,,,,\n")
    emulator.set_faults("segment", Faults(revoked=True))
    settings = segment_settings()
    result = sync(settings)
    assert result.exit_code == 3
    assert "refused the credentials (401)" in (result.deliveries["segment"].stopped or "")
    emulator.set_faults("segment", Faults())
    assert sync(settings).deliveries["segment"].counts == {"ok": 1}


def test_build_connector_uses_region_hosts(
    monkeypatch: pytest.MonkeyPatch, make_settings: WriteConfig
) -> None:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY", "wk")
    settings = make_settings(extra='[destinations.segment]\nenabled = true\nregion = "eu"\n')
    connector = build_connector("segment", settings, "r")
    assert isinstance(connector, SegmentConnector)
    assert str(connector.transport.client.base_url) == "https://events.eu1.segmentapis.com"
    asyncio.run(connector.aclose())
