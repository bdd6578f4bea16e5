"""The Segment look-alike behaves like the HTTP Tracking API: 200 to almost everything, silent drops."""

from __future__ import annotations

import httpx

from accoil_sync.emulator import Emulator, Faults

AUTH = httpx.BasicAuth("wk_test", "")


def identify(n: int, **extra: object) -> dict[str, object]:
    return {
        "type": "identify",
        "userId": f"u{n}",
        "messageId": f"m{n}",
        "traits": {"Accoil_Default_Score": n},
        **extra,
    }


async def test_batch_lands_identify_and_group(client: httpx.AsyncClient, emulator: Emulator) -> None:
    batch = [
        identify(1),
        {
            "type": "group",
            "groupId": "acc",
            "anonymousId": "a1",
            "messageId": "g1",
            "traits": {"Accoil_Default_ActiveUsers": 3},
        },
    ]
    r = await client.post(
        "/segment/v1/batch", json={"batch": batch, "context": {"library": {"name": "t"}}}, auth=AUTH
    )
    assert r.status_code == 200 and r.json() == {"success": True}
    state = emulator.segment.state()
    assert state["users"] == {"u1": {"Accoil_Default_Score": 1}}
    assert state["groups"] == {"acc": {"Accoil_Default_ActiveUsers": 3}}


async def test_missing_auth_is_401(client: httpx.AsyncClient) -> None:
    r = await client.post("/segment/v1/batch", json={"batch": [identify(1)]})
    assert r.status_code == 401


async def test_write_key_in_body_is_accepted(client: httpx.AsyncClient) -> None:
    r = await client.post("/segment/v1/identify", json={"writeKey": "wk", "userId": "u1", "traits": {}})
    assert r.status_code == 200


async def test_size_limits_are_400(client: httpx.AsyncClient) -> None:
    big = identify(1, traits={"x": "y" * 33_000})
    r = await client.post("/segment/v1/batch", json={"batch": [big]}, auth=AUTH)
    assert r.status_code == 400 and "32KB" in r.json()["message"]
    many = [identify(n, traits={"pad": "p" * 300}) for n in range(2000)]
    r = await client.post("/segment/v1/batch", json={"batch": many}, auth=AUTH)
    assert r.status_code == 400 and "500KB" in r.json()["message"]
    r = await client.post(
        "/segment/v1/batch", content=b"{not json", auth=AUTH, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400


async def test_silent_drops_are_visible_in_state(client: httpx.AsyncClient, emulator: Emulator) -> None:
    too_many = [{"type": "identify", "userId": f"u{n}"} for n in range(2501)]
    r = await client.post("/segment/v1/batch", json={"batch": too_many}, auth=AUTH)
    assert r.status_code == 200
    r = await client.post(
        "/segment/v1/batch", json={"batch": [{"type": "identify", "traits": {}}]}, auth=AUTH
    )
    assert r.status_code == 200
    r = await client.post(
        "/segment/v1/batch", json={"batch": [identify(1), identify(1), identify(2)]}, auth=AUTH
    )
    assert r.status_code == 200
    state = emulator.segment.state()
    assert state["dropped"] == {"batch_too_large": 2501, "no_user_anon_id": 1, "duplicate_message_id": 1}
    assert state["duplicates_dropped"] == 1
    assert set(state["users"]) == {"u1", "u2"}


async def test_rate_limit_429_with_retry_after() -> None:
    emulator = Emulator("clean", segment_per_second=3)
    transport = httpx.ASGITransport(app=emulator.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://e") as c:
        codes = [(await c.post("/segment/v1/batch", json={"batch": []}, auth=AUTH)) for _ in range(4)]
    assert [r.status_code for r in codes] == [200, 200, 200, 429]
    assert int(codes[-1].headers["Retry-After"]) >= 1


async def test_injected_faults_are_seeded_and_scripted(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.set_faults("segment", Faults(fail_next=[500, 503]))
    codes = [
        (await client.post("/segment/v1/batch", json={"batch": [identify(1)]}, auth=AUTH)).status_code
        for _ in range(3)
    ]
    assert codes == [500, 503, 200]
    r = await client.post("/_emulator/faults/segment", json={"revoked": True})
    assert r.json()["revoked"] is True
    assert (await client.post("/segment/v1/batch", json={"batch": []}, auth=AUTH)).status_code == 401
    counters = (await client.get("/_emulator/state")).json()["segment"]["requests"]
    assert counters["by_status"] == {"500": 1, "503": 1, "200": 1, "401": 1}


async def test_seeded_faults_repeat_exactly() -> None:
    async def run() -> list[int | str]:
        emulator = Emulator("flaky", seed=42)
        transport = httpx.ASGITransport(app=emulator.app())
        out: list[int | str] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://e") as c:
            for n in range(120):
                try:
                    r = await c.post("/segment/v1/batch", json={"batch": [identify(n)]}, auth=AUTH)
                    out.append(r.status_code)
                except (ConnectionResetError, httpx.TransportError):
                    out.append("dropped")
        return out

    first = await run()
    assert first == await run()
    assert {500, 502, 503, 429} & set(first) and 200 in first


async def test_state_persists_to_sqlite(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "emulator.db"
    first = Emulator("clean", persist=path)
    transport = httpx.ASGITransport(app=first.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://e") as c:
        group = {"type": "group", "groupId": "acc_1", "userId": "u1", "traits": {}}
        await c.post("/segment/v1/batch", json={"batch": [identify(1), group]}, auth=AUTH)
        await c.post(
            "/hubspot/crm/v3/objects/contacts",
            headers={"Authorization": "Bearer t"},
            json={"properties": {"email": "a@x.io"}},
        )
        await c.post("/intercom/tags", headers={"Authorization": "Bearer t"}, json={"name": "T"})
        assert (await c.post("/_emulator/save")).status_code == 200
    second = Emulator("clean", persist=path)
    assert second.segment.state()["users"] == {"u1": {"Accoil_Default_Score": 1}}
    assert "m1" in second.segment.seen  # de-duplication survives the restart
    assert second.segment.state()["members"] == {"acc_1": ["u1"]}  # and who is linked to which group
    assert second.segment.state()["tracked_users"] == 1
    assert [c["email"] for c in second.hubspot.state()["contacts"].values()] == ["a@x.io"]
    assert second.intercom.state()["tags"] == ["T"]


async def test_tracked_users_are_counted_as_segment_bills_mtus(client: httpx.AsyncClient) -> None:
    """ "Segment counts the number of unique userIds, and then adds the number of unique anonymousIds that
    were not associated with a userId" (segment-docs src/guides/usage-and-billing/mtus-and-throughput.md)."""
    batch = [
        {"type": "identify", "userId": "u1", "traits": {}},
        {"type": "group", "groupId": "g1", "userId": "u1", "traits": {}},  # the same user again
        {"type": "identify", "userId": "u2", "anonymousId": "a2", "traits": {}},  # a2 belongs to u2
        {"type": "group", "groupId": "g1", "anonymousId": "a2", "traits": {}},
        {"type": "group", "groupId": "g2", "anonymousId": "a3", "traits": {}},  # an anonymous user of its own
    ]
    await client.post("/segment/v1/batch", json={"batch": batch}, auth=AUTH)
    state = (await client.get("/_emulator/state")).json()["segment"]
    assert state["tracked_users"] == 3
    assert state["members"] == {"g1": ["a2", "u1"], "g2": ["a3"]}
