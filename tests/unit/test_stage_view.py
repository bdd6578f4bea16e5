"""The read-only source view Segment's member mode reads: an account's members are exactly the users whose
record names it (a user's account is its last staged row's, as ``RecordDecoder`` decides)."""

from __future__ import annotations

from pathlib import Path

from accoil_sync.config.models import ProfileConfig, SourceConfig
from accoil_sync.sources import Stage, load_stage
from accoil_sync.sources.view import StageView
from accoil_sync.traits import ObjectKind
from tests.conftest import write

PROFILES = [ProfileConfig(name="Default"), ProfileConfig(name="product usage", window_days=30)]


def stage(tmp_path: Path, users: str, profiles: list[ProfileConfig] | None = None) -> Stage:
    write(tmp_path / "users.csv", users)
    write(tmp_path / "accounts.csv", "account_id,score\nacc_1,10\nacc_2,20\n")
    cfg = SourceConfig(users="users.csv", accounts="accounts.csv")  # type: ignore[call-arg]
    return load_stage(Stage(tmp_path / "stage", profiles or PROFILES[:1], "t"), cfg)


def test_members_stream_in_account_then_user_order_in_small_fetches(tmp_path: Path) -> None:
    users = "user_id,account_id,score\n" + "".join(f"u{n},acc_{n % 3},{n}\n" for n in range(9)) + "u9,,1\n"
    s = stage(tmp_path, users)
    view = StageView(s, fetch=2)
    assert list(view.members(["acc_2", "acc_0", "acc_none"])) == [
        ("acc_0", "u0"),
        ("acc_0", "u3"),
        ("acc_0", "u6"),
        ("acc_2", "u2"),
        ("acc_2", "u5"),
        ("acc_2", "u8"),
    ]
    assert list(view.members([])) == []
    assert view.records(ObjectKind.ACCOUNT, ["acc_2", "acc_9"])["acc_2"].traits() == {
        "Accoil_Default_Score": 20
    }
    s.close()


def test_a_user_with_several_profiles_belongs_where_its_record_says(tmp_path: Path) -> None:
    users = "user_id,account_id,score_name,score\nu1,acc_1,Default,5\nu1,acc_2,product usage,6\nu2,acc_1,Default,1\n"
    s = stage(tmp_path, users, PROFILES)
    record = s.records(ObjectKind.USER, ["u1"])["u1"]
    members = list(StageView(s).members(["acc_1", "acc_2"]))
    assert (record.account_id, members) == ("acc_2", [("acc_1", "u2"), ("acc_2", "u1")])
    s.close()


def test_users_without_an_account_column_have_no_members(tmp_path: Path) -> None:
    s = stage(tmp_path, "user_id,score\nu1,5\n")
    assert list(StageView(s).members(["acc_1"])) == []
    s.close()


def test_unsorted_and_non_ascii_account_keys_all_find_their_members(tmp_path: Path) -> None:
    # The lookup narrows to the range min..max of the keys asked for: it must order strings as DuckDB does.
    keys = ["acc_é", "Acc_Z", "acc_10", "acc_9", "ärger", "zz"]
    users = "user_id,account_id,score\n" + "".join(f"u{n},{k},1\n" for n, k in enumerate(keys))
    s = stage(tmp_path, users)
    found = dict((account, user) for account, user in StageView(s).members(list(reversed(keys))))
    assert found == {k: f"u{n}" for n, k in enumerate(keys)}
    s.close()
