"""Segment connector request shapes, batching boundaries and the retry policy, with respx (no network)."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from pydantic import SecretStr

from accoil_sync.config.models import SegmentDestination
from accoil_sync.connectors import Change
from accoil_sync.connectors.http import RetryPolicy
from accoil_sync.connectors.segment import SegmentConnector, encode_message, message_id
from accoil_sync.errors import DestinationUnavailable, RetryableError
from accoil_sync.traits import ObjectKind

URL = "https://api.segment.io/v1/batch"
FAST = RetryPolicy(max_attempts=4, initial_wait=0.0, max_wait=0.0, unavailable_after=2)


def change(n: int, version: int = 0, **fields: object) -> Change:
    return Change(
        "segment",
        ObjectKind.USER,
        f"u{n}",
        "upsert",
        fields or {"Accoil_Default_Score": n},
        {},
        None,
        "fp",
        version=version,
    )


def connector(**kw: object) -> SegmentConnector:
    cfg = SegmentDestination(enabled=True, write_key=SecretStr("wk_secret"))
    return SegmentConnector(cfg, policy=FAST, **kw)  # type: ignore[arg-type]


def test_message_ids_repeat_for_a_resend_and_move_on_with_the_version() -> None:
    assert message_id(change(1)) == message_id(change(1))
    assert message_id(change(1)) != message_id(change(1, version=1))
    assert message_id(change(1)) != message_id(change(1, Accoil_Default_Score=2))
    assert len(message_id(change(1))) < 100


def test_message_ids_keep_their_documented_derivation() -> None:
    """Ids already sent must stay stable across releases (a batch re-sent after an upgrade within the 24 h
    window must still be de-duplicated): sha256 over [kind, key, version, fields] with sorted keys."""
    import hashlib

    c = change(7, version=3, Accoil_Default_Segments=["B", "A"], Accoil_Default_Score=7.5)
    body = json.dumps(["user", "u7", 3, dict(sorted(c.fields.items()))], separators=(",", ":"))
    assert message_id(c) == "accoil-" + hashlib.sha256(body.encode()).hexdigest()[:38]
    sent = json.loads(encode_message(c, b'"2026-11-23T00:00:00Z"'))
    assert sent["messageId"] == message_id(c)
    assert sent["traits"] == c.fields and sent["userId"] == "u7"


@respx.mock
async def test_batches_respect_the_event_cap_and_byte_budget() -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(200, json={"success": True}))
    c = connector(max_events=3, request_budget=2_000)
    outcomes = await c.deliver(ObjectKind.USER, [change(n) for n in range(10)])
    assert [o.status for o in outcomes] == ["ok"] * 10
    bodies = [json.loads(call.request.content) for call in route.calls]
    assert [len(b["batch"]) for b in bodies] == [3, 3, 3, 1]
    assert all(len(call.request.content) <= 2_000 + 100 for call in route.calls)
    first = bodies[0]["batch"][0]
    assert (
        first["type"] == "identify"
        and first["userId"] == "u0"
        and first["traits"] == {"Accoil_Default_Score": 0}
    )
    assert bodies[0]["context"]["library"]["name"] == "accoil-sync"
    assert route.calls[0].request.headers["authorization"].startswith("Basic ")
    big = [change(n, Accoil_Default_Segments=["x" * 500] * 3) for n in range(10)]
    route.calls.reset()
    await c.deliver(ObjectKind.USER, big)
    assert all(len(call.request.content) <= 2_000 + 100 for call in route.calls)
    await c.aclose()


@respx.mock
async def test_429_with_retry_after_then_success() -> None:
    route = respx.post(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.Response(200, json={"success": True}),
        ]
    )
    c = connector()
    assert [o.status for o in await c.deliver(ObjectKind.USER, [change(1)])] == ["ok"]
    assert route.call_count == 2 and c.transport.throttled == 1 and c.transport.retries == 1
    await c.aclose()


@respx.mock
async def test_400_is_not_retried_and_becomes_a_rejection_with_the_reason() -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(400, json={"message": "Invalid JSON"}))
    c = connector()
    (outcome,) = await c.deliver(ObjectKind.USER, [change(1)])
    assert route.call_count == 1
    assert outcome.status == "rejected" and "Invalid JSON" in (outcome.reason or "")
    await c.aclose()


@respx.mock
async def test_5xx_and_timeouts_are_retried_then_raise_then_stop_the_destination() -> None:
    route = respx.post(URL).mock(side_effect=httpx.ConnectTimeout("boom"))
    c = connector()
    with pytest.raises(RetryableError):
        await c.deliver(ObjectKind.USER, [change(1)])
    assert route.call_count == 4
    route.mock(return_value=httpx.Response(503))
    with pytest.raises(DestinationUnavailable, match="unreachable"):
        await c.deliver(ObjectKind.USER, [change(1)])
    await c.aclose()


@respx.mock
async def test_401_stops_at_once_without_leaking_the_key() -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(401, json={"message": "Invalid write key"}))
    c = connector()
    with pytest.raises(DestinationUnavailable) as info:
        await c.deliver(ObjectKind.USER, [change(1)])
    assert route.call_count == 1
    assert "wk_secret" not in str(info.value)
    await c.aclose()


@respx.mock
async def test_nan_and_infinity_are_rejected_before_sending_and_a_cleared_trait_is_not() -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(200, json={"success": True}))
    c = connector()
    outcomes = await c.deliver(
        ObjectKind.USER,
        [
            change(1, Accoil_Default_Score=float("nan")),
            change(2, Accoil_Default_Activation=float("-inf"), Accoil_Default_Segments=None),
            change(3, Accoil_Default_Score=None),
        ],
    )
    assert [o.status for o in outcomes] == ["rejected", "rejected", "ok"]
    assert all("JSON" in (o.reason or "") for o in outcomes[:2])
    (sent,) = json.loads(route.calls[0].request.content)["batch"]
    assert (sent["userId"], sent["traits"]) == ("u3", {"Accoil_Default_Score": None})
    await c.aclose()
