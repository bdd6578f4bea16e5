"""Segment's group modes end to end (source -> stage -> plan -> deliver) against the emulator.

MTUs as Segment bills them: "Segment counts the number of unique userIds, and then adds the number of unique
anonymousIds that were not associated with a userId during the billing period" (segment-docs
``src/guides/usage-and-billing/mtus-and-throughput.md``); the emulator's ``tracked_users`` counts the same way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.connectors.segment import anonymous_group_id
from accoil_sync.emulator import Emulator, Faults
from accoil_sync.sources import Stage, load_stage
from accoil_sync.traits import ObjectKind, TraitsEncoder
from tests.conftest import WriteConfig, write
from tests.integration import test_segment
from tests.integration.test_segment import sync

segment_settings = test_segment.segment_settings  # the fixture, shared with the other Segment tests

USERS = "user_id,account_id,score\n"
ACCOUNTS = "account_id,score,active_users,total_users\n"


def source(directory: Path, users: str, accounts: str) -> None:
    write(directory / "users.csv", USERS + users)
    write(directory / "accounts.csv", ACCOUNTS + accounts)


def settings_for(make: WriteConfig, **segment: object) -> Settings:
    return make(users="users.csv", accounts="accounts.csv", **segment)  # type: ignore[no-any-return]


def current_traits(settings: Settings, account: str) -> dict[str, object]:
    stage = load_stage(Stage(Path("tmp-stage"), settings.profiles, "check"), settings.source)
    try:
        return TraitsEncoder().encode(stage.records(ObjectKind.ACCOUNT, [account])[account])
    finally:
        stage.close()


def test_members_mode_links_every_user_after_its_identify_and_adds_no_tracked_user(
    segment_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    source(
        tmp_path,
        "u1,acc_1,10\nu2,acc_1,20\nu3,acc_2,30\nu4,,40\n",
        "acc_1,50,2,2\nacc_2,60,1,1\nacc_3,70,0,0\n",
    )
    settings = settings_for(segment_settings)
    result = sync(settings)
    assert result.deliveries["segment"].counts == {"ok": 7}
    state = emulator.segment.state()
    # The inspection endpoint shows who is linked to which company.
    assert state["members"] == {"acc_1": ["u1", "u2"], "acc_2": ["u3"]}
    assert state["groups"]["acc_1"] == current_traits(settings, "acc_1")
    assert "acc_3" not in state["groups"]  # no member: skipped (memberless_accounts = "skip")
    assert state["tracked_users"] == 4  # the four users; no anonymous account users
    sent = [(m["type"], m["userId"], m.get("groupId")) for m in emulator.segment.messages]
    assert all("anonymousId" not in m for m in emulator.segment.messages)
    # A first sync: each member's call for its account (accounts go first), then each new user's identify
    # followed by its own link, so a destination that can only attach an existing contact links it too.
    members = [("group", "u1", "acc_1"), ("group", "u2", "acc_1"), ("group", "u3", "acc_2")]
    assert sorted(sent[:3]) == members
    for user, account in (("u1", "acc_1"), ("u2", "acc_1"), ("u3", "acc_2")):
        mine = [m for m in sent[3:] if m[1] == user]
        assert mine == [("identify", user, None), ("group", user, account)]
    requests = state["requests"]["total"]
    assert sync(settings).deliveries["segment"].counts == {}  # a re-run sends nothing
    assert emulator.segment.state()["requests"]["total"] == requests


def test_synthetic_mode_adds_one_tracked_user_per_account(
    segment_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    source(tmp_path, "u1,acc_1,10\nu2,acc_1,20\n", "acc_1,50,2,2\nacc_2,60,0,0\n")
    sync(settings_for(segment_settings, group_mode="synthetic"))
    state = emulator.segment.state()
    assert state["tracked_users"] == 2 + 2  # two users, plus one anonymous user per account
    assert state["members"] == {
        "acc_1": [anonymous_group_id("acc_1")],
        "acc_2": [anonymous_group_id("acc_2")],
    }  # no user is linked to its account


def test_a_moved_user_is_linked_to_its_new_account_without_other_writes(
    segment_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    users = tmp_path / "users.csv"
    write(users, USERS + "u1,acc_1,10\nu2,acc_1,20\n")
    write(tmp_path / "accounts.csv", ACCOUNTS + "acc_1,50,2,2\nacc_2,60,0,0\n")
    settings = settings_for(segment_settings)
    sync(settings)
    assert emulator.segment.state()["members"] == {"acc_1": ["u1", "u2"]}
    before = len(emulator.segment.messages)
    write(users, USERS + "u1,acc_1,10\nu2,acc_2,20\n")  # u2 moves; no trait and no account changed
    result = sync(settings)
    assert result.deliveries["segment"].counts == {"ok": 1}
    (message,) = emulator.segment.messages[before:]
    assert (message["type"], message["userId"], message["groupId"]) == ("group", "u2", "acc_2")
    assert message["traits"] == current_traits(settings, "acc_2")  # the account's current traits
    state = emulator.segment.state()
    # Segment has no call to take u2 out of acc_1; destinations keep the old link (docs/CONFIG.md).
    assert state["members"] == {"acc_1": ["u1", "u2"], "acc_2": ["u2"]}
    assert state["groups"]["acc_2"] == current_traits(settings, "acc_2")  # acc_2 reached Segment via u2
    assert sync(settings).deliveries["segment"].counts == {}


def test_switching_from_synthetic_to_members_links_each_user_once(
    segment_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    source(tmp_path, "u1,acc_1,10\nu2,acc_1,20\n", "acc_1,50,2,2\n")
    sync(settings_for(segment_settings, group_mode="synthetic"))
    before = len(emulator.segment.messages)
    result = sync(settings_for(segment_settings, group_mode="members"))
    # Accounts: their traits were delivered already, nothing to re-send; users: one link call each.
    assert result.deliveries["segment"].counts == {"ok": 2, "refreshed": 1}
    new = emulator.segment.messages[before:]
    assert sorted((m["type"], m["userId"], m["groupId"]) for m in new) == [
        ("group", "u1", "acc_1"),
        ("group", "u2", "acc_1"),
    ]
    assert all(m["traits"] == current_traits(settings_for(segment_settings), "acc_1") for m in new)


def test_a_changed_account_reaches_every_member_and_a_crash_resend_is_deduplicated(
    segment_settings: WriteConfig, emulator: Emulator, tmp_path: Path
) -> None:
    write(tmp_path / "users.csv", USERS + "".join(f"u{n},acc_1,{n}\n" for n in range(30)))
    accounts = tmp_path / "accounts.csv"
    write(accounts, ACCOUNTS + "acc_1,50,30,30\n")
    settings = settings_for(segment_settings)
    sync(settings)
    before = len(emulator.segment.messages)
    write(accounts, ACCOUNTS + "acc_1,51,30,30\n")
    emulator.set_faults("segment", Faults(fail_next=[0]))
    first = sync(settings)  # Segment took the member calls, the answer was lost: retried, then de-duplicated
    assert first.deliveries["segment"].counts == {"ok": 1}
    new = emulator.segment.messages[before:]
    assert len(new) == 30 and {m["traits"]["Accoil_Default_Score"] for m in new} == {51}
    assert emulator.segment.state()["duplicates_dropped"] == 30


@pytest.mark.parametrize("mode", ["skip", "synthetic"])
def test_memberless_accounts_follow_the_setting(
    segment_settings: WriteConfig, emulator: Emulator, tmp_path: Path, mode: str
) -> None:
    users = tmp_path / "users.csv"
    write(users, USERS + "u1,acc_1,10\n")
    write(tmp_path / "accounts.csv", ACCOUNTS + "acc_1,50,1,1\nacc_2,60,0,0\n")
    settings = settings_for(segment_settings, memberless_accounts=mode)
    assert sync(settings).deliveries["segment"].counts == {"ok": 3}
    state = emulator.segment.state()
    if mode == "skip":
        assert "acc_2" not in state["groups"] and state["tracked_users"] == 1
        write(users, USERS + "u1,acc_1,10\nu2,acc_2,5\n")  # a member appears: linked with all traits
        sync(settings)
        assert emulator.segment.state()["members"]["acc_2"] == ["u2"]
        assert emulator.segment.state()["groups"]["acc_2"] == current_traits(settings, "acc_2")
    else:
        assert state["members"]["acc_2"] == [anonymous_group_id("acc_2")] and state["tracked_users"] == 2
