"""Intercom request shapes and the header-driven limiter, with respx (no network)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import respx
from pydantic import SecretStr

from accoil_sync.config.models import IntercomDestination, ProfileConfig
from accoil_sync.connectors import Change
from accoil_sync.connectors.http import RateLimiter, RetryPolicy
from accoil_sync.connectors.intercom import IntercomConnector
from accoil_sync.errors import ConfigError
from accoil_sync.traits import ObjectKind
from tests.conftest import WriteConfig

API = "https://api.eu.intercom.io"


def connector(tmp_path: Path) -> IntercomConnector:
    cfg = IntercomDestination(enabled=True, region="eu", access_token=SecretStr("tok"), tag_prefix="Accoil: ")
    return IntercomConnector(
        cfg, [ProfileConfig(name="Default")], tmp_path, policy=RetryPolicy(initial_wait=0, max_wait=0)
    )


@respx.mock
async def test_steady_state_update_is_one_put_with_version_header(tmp_path: Path) -> None:
    put = respx.put(f"{API}/contacts/abc").mock(return_value=httpx.Response(200, json={"id": "abc"}))
    c = connector(tmp_path)
    change = Change(
        "intercom",
        ObjectKind.USER,
        "u1",
        "upsert",
        {"Accoil_Default_Score": 5},
        {"Accoil_Default_Score": 4},
        None,
        "fp",
        dest_id="abc",
    )
    (outcome,) = await c.deliver(ObjectKind.USER, [change])
    assert outcome.status == "ok" and outcome.dest_id == "abc"
    request = put.calls[0].request
    assert json.loads(request.content) == {"custom_attributes": {"Accoil_Default_Score": 5}}
    assert request.headers["Intercom-Version"] == "2.14"
    assert request.headers["Authorization"] == "Bearer tok"
    assert len(respx.calls) == 1
    await c.aclose()


@respx.mock
async def test_tags_are_added_in_bulk_per_tag_and_removed_per_contact(tmp_path: Path) -> None:
    bodies: list[dict[str, object]] = []

    def tags(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        return httpx.Response(
            200, json={"type": "tag", "id": {"Accoil: New": "t1", "Accoil: Old": "t2"}[body["name"]]}
        )

    respx.post(f"{API}/tags").mock(side_effect=tags)
    untag = respx.delete(url__regex=rf"{API}/contacts/\w+/tags/t2").mock(
        return_value=httpx.Response(200, json={})
    )
    c = connector(tmp_path)
    changes = [
        Change(
            "intercom",
            ObjectKind.USER,
            f"u{n}",
            "upsert",
            {"tags": ["Accoil: Keep", "Accoil: New"]},
            {"tags": ["Accoil: Keep", "Accoil: Old"] if n < 2 else ["Accoil: Keep"]},
            None,
            "fp",
            dest_id=f"c{n}",
        )
        for n in range(3)
    ]
    outcomes = await c.deliver(ObjectKind.USER, changes)
    assert [o.status for o in outcomes] == ["ok"] * 3
    bulk = [b for b in bodies if "users" in b]
    assert bulk == [{"name": "Accoil: New", "users": [{"id": "c0"}, {"id": "c1"}, {"id": "c2"}]}]
    assert sorted(str(call.request.url).rsplit("/", 3)[1] for call in untag.calls) == ["c0", "c1"]
    assert len(respx.calls) == 1 + 1 + 2  # the bulk add, the tag id lookup, two removals
    await c.aclose()


async def test_limiter_pauses_until_the_reset_timestamp_and_shrinks_to_the_published_limit() -> None:
    limiter = RateLimiter(1666, 10.0)
    limiter.observe(remaining=0, reset_in=0.3, limit=500)
    assert limiter.rate == 500
    start = time.monotonic()
    await limiter.acquire()
    assert time.monotonic() - start >= 0.25


async def test_limiter_never_lets_more_than_the_limit_into_a_window() -> None:
    limiter = RateLimiter(5, 0.5)
    stamps = []
    for _ in range(12):
        await limiter.acquire()
        stamps.append(time.monotonic())
    for i in range(len(stamps) - 5):
        assert stamps[i + 5] - stamps[i] >= 0.5 - 1e-3


@respx.mock
async def test_one_contacts_exhausted_retry_fails_only_that_contact(tmp_path: Path) -> None:
    respx.put(url__regex=rf"{API}/contacts/c[02]").mock(return_value=httpx.Response(200, json={}))
    respx.put(f"{API}/contacts/c1").mock(return_value=httpx.Response(503, json={}))
    c = connector(tmp_path)
    changes = [
        Change(
            "intercom",
            ObjectKind.USER,
            f"u{n}",
            "upsert",
            {"Accoil_Default_Score": n},
            {},
            None,
            "fp",
            dest_id=f"c{n}",
        )
        for n in range(3)
    ]
    outcomes = await c.deliver(ObjectKind.USER, changes)
    assert [o.status for o in outcomes] == ["ok", "retryable", "ok"]
    await c.aclose()


def test_an_empty_tag_prefix_is_a_config_error_naming_the_field(make_settings: WriteConfig) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings(extra='[destinations.intercom]\ntag_prefix = ""\n')
    assert "destinations.intercom.tag_prefix" in str(info.value)


def test_clears_are_null_and_tags_are_per_profile_when_profiles_differ() -> None:
    from accoil_sync.traits.encoders import IntercomEncoder

    one, several = IntercomEncoder(), IntercomEncoder(per_profile_tags=True)
    assert one.cleared("Accoil_Default_Score") is None and one.cleared("tags") == []
    assert one.tag("Default", "New") == "Accoil: New"
    assert several.tag("Usage", "New") == "Accoil: Usage: New"
    assert one.signature != several.signature
