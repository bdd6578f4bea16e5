"""Segment's member group mode with respx: one group call per member, links on a move, batch splitting.

Segment's spec: "The `group` API call is how you associate an individual user with a group", and a trait a
call leaves out keeps its earlier value ("if you do not send that property, the original value is
persisted") -- segment-docs ``src/connections/spec/group.md``. Each call needs a userId or anonymousId
(``src/connections/sources/catalog/libraries/server/http-api/index.md``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from accoil_sync.config.models import SegmentDestination
from accoil_sync.config.settings import load_settings
from accoil_sync.connectors import Change
from accoil_sync.connectors.base import UsesSourceView
from accoil_sync.connectors.http import RetryPolicy
from accoil_sync.connectors.segment import (
    GROUP_FIELD,
    MAX_EVENTS,
    SegmentConnector,
    anonymous_group_id,
    link_message_id,
    member_message_id,
)
from accoil_sync.errors import ConfigError
from accoil_sync.traits import ObjectKind
from accoil_sync.traits.model import ObjectRecord
from accoil_sync.traits.names import Metric

URL = "https://api.segment.io/v1/batch"
FAST = RetryPolicy(max_attempts=2, initial_wait=0.0, max_wait=0.0, unavailable_after=2)


class View:
    """A source with ``members`` (account -> users) and account records."""

    def __init__(self, members: dict[str, list[str]], accounts: dict[str, ObjectRecord] | None = None):
        self._members = members
        self._accounts = accounts or {}
        self.record_calls: list[list[str]] = []

    def members(self, accounts: Sequence[str]) -> Iterator[tuple[str, str]]:
        for account in sorted(accounts):
            for user in sorted(self._members.get(account, [])):
                yield account, user

    def records(self, kind: ObjectKind, keys: Sequence[str]) -> dict[str, ObjectRecord]:
        assert kind is ObjectKind.ACCOUNT
        self.record_calls.append(list(keys))
        return {k: self._accounts[k] for k in keys if k in self._accounts}


def account_record(key: str, score: int, total: int = 3) -> ObjectRecord:
    metrics = {"Default": {Metric.SCORE: score, Metric.TOTAL_USERS: total}}
    return ObjectRecord(ObjectKind.ACCOUNT, key, metrics, computed_at="2026-11-20T00:00:00Z")


def account_change(key: str, score: int, version: int = 0, **fields: Any) -> Change:
    record = account_record(key, score)
    fields = fields or {"Accoil_Default_Score": score, "Accoil_Default_TotalUsers": 3}
    return Change("segment", ObjectKind.ACCOUNT, key, "upsert", fields, {}, record, "fp", version=version)


def user_change(key: str, version: int = 0, **fields: Any) -> Change:
    return Change("segment", ObjectKind.USER, key, "upsert", fields, {}, None, "fp", version=version)


def connector(view: View | None, **cfg: Any) -> SegmentConnector:
    c = SegmentConnector(SegmentDestination(enabled=True, write_key=SecretStr("wk"), **cfg), policy=FAST)
    if view is not None:
        c.bind_source(view)  # type: ignore[arg-type]
    return c


def sent(route: respx.Route) -> list[dict[str, Any]]:
    return [m for call in route.calls for m in json.loads(call.request.content)["batch"]]


@pytest.fixture
def route() -> Iterator[respx.Route]:
    with respx.mock:
        yield respx.post(URL).mock(return_value=httpx.Response(200, json={"success": True}))


async def test_each_member_gets_a_group_call_with_the_accounts_traits(route: respx.Route) -> None:
    view = View({"acc_1": ["u1", "u2"], "acc_2": ["u3"]})
    c = connector(view)
    assert isinstance(c, UsesSourceView)  # the runner binds a view to it
    outcomes = await c.deliver(ObjectKind.ACCOUNT, [account_change("acc_1", 50), account_change("acc_2", 70)])
    assert [(o.key, o.status, o.fields) for o in outcomes] == [("acc_1", "ok", None), ("acc_2", "ok", None)]
    messages = sent(route)
    assert [(m["type"], m["groupId"], m["userId"]) for m in messages] == [
        ("group", "acc_1", "u1"),
        ("group", "acc_1", "u2"),
        ("group", "acc_2", "u3"),
    ]
    assert all("anonymousId" not in m for m in messages)  # no synthetic user: nothing added to MTUs
    assert messages[0]["traits"] == {"Accoil_Default_Score": 50, "Accoil_Default_TotalUsers": 3}
    assert messages[2]["traits"]["Accoil_Default_Score"] == 70
    assert messages[0]["timestamp"] == "2026-11-20T00:00:00Z"  # the account's computed-at time
    ids = [m["messageId"] for m in messages]
    assert len(set(ids)) == 3 and all(len(i) < 100 for i in ids)  # Segment: unique, < 100 characters


async def test_a_changed_account_sends_only_its_changed_traits_to_members(route: respx.Route) -> None:
    c = connector(View({"acc_1": ["u1"]}))
    await c.deliver(ObjectKind.ACCOUNT, [account_change("acc_1", 55, version=1, Accoil_Default_Score=55)])
    (message,) = sent(route)
    # Segment keeps the traits a call leaves out, so the unchanged TotalUsers is not repeated.
    assert message["traits"] == {"Accoil_Default_Score": 55}


async def test_member_message_ids_are_deterministic_per_account_member_version_and_values(
    route: respx.Route,
) -> None:
    view = View({"acc_1": ["u1", "u2"]})
    await connector(view).deliver(ObjectKind.ACCOUNT, [account_change("acc_1", 50)])
    first = [m["messageId"] for m in sent(route)]
    route.reset()
    # A crash after Segment acknowledged and before the state commit: the re-send repeats every id, so
    # Segment's messageId de-duplication drops the copies.
    await connector(view).deliver(ObjectKind.ACCOUNT, [account_change("acc_1", 50)])
    assert [m["messageId"] for m in sent(route)] == first
    traits = {"Accoil_Default_Score": 50, "Accoil_Default_TotalUsers": 3}
    assert first == [member_message_id("acc_1", u, 0, traits) for u in ("u1", "u2")]
    assert member_message_id("acc_1", "u1", 1, traits) != first[0]  # the next delivery is not dropped
    assert member_message_id("acc_1", "u1", 0, {"Accoil_Default_Score": 51}) != first[0]
    assert link_message_id("u1", "acc_1", 0, traits) != first[0]


async def test_a_memberless_account_is_skipped_and_recorded_as_nothing_sent(
    route: respx.Route, caplog: pytest.LogCaptureFixture
) -> None:
    c = connector(View({}))
    (outcome,) = await c.deliver(ObjectKind.ACCOUNT, [account_change("acc_lonely", 10)])
    assert outcome.status == "ok" and outcome.fields == {}  # acknowledged with nothing delivered
    assert route.calls == []
    await c.aclose()
    assert "1 account(s) have no member users" in caplog.text and "acc_lonely" in caplog.text


async def test_a_memberless_account_can_fall_back_to_the_synthetic_anonymous_id(route: respx.Route) -> None:
    c = connector(View({"acc_1": ["u1"]}), memberless_accounts="synthetic")
    await c.deliver(ObjectKind.ACCOUNT, [account_change("acc_1", 1), account_change("acc_2", 2)])
    messages = sent(route)
    assert [(m["groupId"], m.get("userId"), m.get("anonymousId")) for m in messages] == [
        ("acc_1", "u1", None),
        ("acc_2", None, anonymous_group_id("acc_2")),
    ]


async def test_synthetic_mode_sends_one_anonymous_group_call_per_account(route: respx.Route) -> None:
    c = connector(None, group_mode="synthetic")
    await c.deliver(ObjectKind.ACCOUNT, [account_change("acc_1", 1)])
    (message,) = sent(route)
    assert message["anonymousId"] == anonymous_group_id("acc_1") and "userId" not in message
    assert c.encoder.encode(ObjectRecord(ObjectKind.USER, "u1", {}, account_id="acc_1")) == {}


async def test_a_moved_user_is_linked_to_its_new_account_with_the_accounts_current_traits(
    route: respx.Route,
) -> None:
    view = View({}, {"acc_new": account_record("acc_new", 80, total=9)})
    c = connector(view)
    # The user's traits did not change; only its account did.
    moved = user_change("u1", version=4, **{GROUP_FIELD: "acc_new"})
    both = user_change("u2", **{"Accoil_Default_Score": 3, GROUP_FIELD: "acc_new"})
    outcomes = await c.deliver(ObjectKind.USER, [moved, both])
    assert [o.status for o in outcomes] == ["ok", "ok"]
    messages = sent(route)
    assert [(m["type"], m["userId"], m.get("groupId")) for m in messages] == [
        ("group", "u1", "acc_new"),
        ("identify", "u2", None),
        ("group", "u2", "acc_new"),
    ]
    current = {"Accoil_Default_Score": 80, "Accoil_Default_TotalUsers": 9}
    assert messages[0]["traits"] == current  # all the account's traits, not just what changed
    assert messages[1]["traits"] == {"Accoil_Default_Score": 3}  # groupId is not a trait
    assert messages[0]["messageId"] == link_message_id("u1", "acc_new", 4, current)
    assert view.record_calls == [["acc_new"]]  # one lookup for the batch


async def test_a_user_leaving_every_account_sends_nothing_for_the_link(route: respx.Route) -> None:
    # Segment has no call that removes a user from a group; the link is only dropped from our state.
    (outcome,) = await connector(View({})).deliver(
        ObjectKind.USER, [user_change("u1", **{GROUP_FIELD: None})]
    )
    assert outcome.status == "ok" and route.calls == []


async def test_a_user_linked_to_an_account_not_in_the_source_gets_a_link_without_traits(
    route: respx.Route,
) -> None:
    await connector(View({})).deliver(ObjectKind.USER, [user_change("u1", **{GROUP_FIELD: "acc_x"})])
    (message,) = sent(route)
    assert message["groupId"] == "acc_x" and message["userId"] == "u1" and message["traits"] == {}


async def test_members_linked_by_this_runs_account_calls_are_not_linked_twice(route: respx.Route) -> None:
    view = View({"acc_1": ["u1", "u2"]}, {"acc_1": account_record("acc_1", 50)})
    c = connector(view)
    await c.deliver(ObjectKind.ACCOUNT, [account_change("acc_1", 50)])  # all traits, acknowledged
    route.reset()
    outcomes = await c.deliver(
        ObjectKind.USER,
        [
            user_change("u1", **{GROUP_FIELD: "acc_1"}),
            user_change("u2", Accoil_Default_Score=1, groupId="acc_1"),
        ],
    )
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert [(m["type"], m["userId"]) for m in sent(route)] == [("identify", "u2")]
    assert view.record_calls == []


async def test_a_new_user_is_linked_after_its_identify_even_when_its_account_was_sent(
    route: respx.Route,
) -> None:
    """Its member call went out before the user existed downstream; Intercom, for one, answers 404
    "Contact Not Found" to attaching a contact it does not have (developers.intercom.com, "Attach a
    Contact to a Company")."""
    view = View({"acc_1": ["u1"]}, {"acc_1": account_record("acc_1", 50)})
    c = connector(view)
    await c.deliver(ObjectKind.ACCOUNT, [account_change("acc_1", 50)])
    route.reset()
    new = user_change("u1", Accoil_Default_Score=1, groupId="acc_1")
    new.is_new = True
    await c.deliver(ObjectKind.USER, [new])
    assert [(m["type"], m.get("groupId")) for m in sent(route)] == [("identify", None), ("group", "acc_1")]


async def test_a_partial_account_update_does_not_stand_in_for_a_members_link(route: respx.Route) -> None:
    view = View({"acc_1": ["u1"]}, {"acc_1": account_record("acc_1", 55)})
    c = connector(view)
    await c.deliver(ObjectKind.ACCOUNT, [account_change("acc_1", 55, version=2, Accoil_Default_Score=55)])
    route.reset()
    await c.deliver(ObjectKind.USER, [user_change("u1", **{GROUP_FIELD: "acc_1"})])
    (message,) = sent(route)
    assert message["traits"] == {"Accoil_Default_Score": 55, "Accoil_Default_TotalUsers": 3}


async def test_an_account_with_ten_thousand_members_is_split_within_segments_limits(
    route: respx.Route,
) -> None:
    """/v1/batch takes at most 500 KB per request, 32 KB per message and 2,500 events (http-api docs)."""
    users = [f"user-{n:05d}-{'x' * 40}" for n in range(10_000)]
    c = connector(View({"acc_big": users, "acc_small": ["u1"]}))
    outcomes = await c.deliver(
        ObjectKind.ACCOUNT, [account_change("acc_big", 50), account_change("acc_small", 5)]
    )
    assert [o.status for o in outcomes] == ["ok", "ok"]
    bodies = [call.request.content for call in route.calls]
    assert len(bodies) > 1
    assert all(len(body) <= 500 * 1024 for body in bodies)
    assert all(len(json.loads(body)["batch"]) <= MAX_EVENTS for body in bodies)
    messages = sent(route)
    assert sorted(m["userId"] for m in messages if m["groupId"] == "acc_big") == users  # each exactly once
    assert [m["userId"] for m in messages if m["groupId"] == "acc_small"] == ["u1"]


async def test_a_refused_request_fails_only_the_accounts_in_it() -> None:
    with respx.mock:
        route = respx.post(URL).mock(
            side_effect=[
                httpx.Response(200, json={"success": True}),
                httpx.Response(400, json={"success": False, "message": "Invalid JSON"}),
            ]
        )
        c = SegmentConnector(
            SegmentDestination(enabled=True, write_key=SecretStr("wk")), policy=FAST, max_events=3
        )
        c.bind_source(View({"acc_1": ["a", "b", "c"], "acc_2": ["d"]}))  # type: ignore[arg-type]
        outcomes = await c.deliver(
            ObjectKind.ACCOUNT, [account_change("acc_1", 1), account_change("acc_2", 2)]
        )
    assert len(route.calls) == 2
    assert [(o.key, o.status) for o in outcomes] == [("acc_1", "ok"), ("acc_2", "rejected")]
    assert "Invalid JSON" in (outcomes[1].reason or "")


async def test_members_mode_without_a_source_view_is_a_clear_programming_error() -> None:
    with pytest.raises(RuntimeError, match="bind_source"):
        await connector(None).deliver(ObjectKind.ACCOUNT, [account_change("acc_1", 1)])


def test_a_wrong_group_mode_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[source]\nusers = "u.csv"\n[destinations.segment]\ngroup_mode = "anonymous"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert info.value.problems[0][0] == "destinations.segment.group_mode"
    assert "'members'" in str(info.value) and "'synthetic'" in str(info.value)
    cfg.write_text('[source]\nusers = "u.csv"\n[destinations.segment]\nmemberless_accounts = "drop"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert info.value.problems[0][0] == "destinations.segment.memberless_accounts"
