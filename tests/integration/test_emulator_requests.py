"""The emulator counts requests per vendor and operation (and status), for the benchmarks' request mix."""

from __future__ import annotations

import httpx

from accoil_sync.emulator import Emulator, Faults

SEGMENT = httpx.BasicAuth("wk_test", "")
BEARER = {"Authorization": "Bearer tok", "Intercom-Version": "2.14"}


async def test_requests_are_counted_per_operation_and_status(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    batch = [
        {"type": "identify", "userId": "u1", "traits": {"a": 1}},
        {"type": "group", "groupId": "g1", "userId": "u1", "traits": {}},
        {"type": "group", "groupId": "g2", "anonymousId": "anon-g2", "traits": {}},
    ]
    assert (await client.post("/segment/v1/batch", json={"batch": batch}, auth=SEGMENT)).status_code == 200
    for kind in ("contacts", "contacts", "companies"):
        await client.post(f"/hubspot/crm/v3/objects/{kind}/batch/update", json={"inputs": []}, headers=BEARER)
    await client.post("/intercom/tags", json={"name": "Most Engaged"}, headers=BEARER)
    emulator.set_faults("intercom", Faults(fail_next=[429]))
    await client.post("/intercom/tags", json={"name": "Most Engaged"}, headers=BEARER)

    counts = (await client.get("/_emulator/requests")).json()
    assert counts["segment"]["by_operation"] == {"batch": {"total": 1, "200": 1}}
    # /v1/batch is one request whatever it carries: the accepted messages are counted by call too.
    assert counts["segment"]["by_message"] == {"group/anonymous": 1, "group/user": 1, "identify": 1}
    hubspot = counts["hubspot"]["by_operation"]
    assert hubspot["contacts/batch/update"]["total"] == 2 and hubspot["companies/batch/update"]["total"] == 1
    assert counts["intercom"]["by_operation"]["tags/create"] == {"total": 2, "200": 1, "429": 1}
    # The same counters are in the state, beside what each vendor holds.
    state = (await client.get("/_emulator/state")).json()
    assert state["hubspot"]["requests"]["by_operation"] == hubspot
    await client.post("/_emulator/reset")
    cleared = (await client.get("/_emulator/requests")).json()
    assert all(v["by_operation"] == {} and v["total"] == 0 for v in cleared.values())
    assert cleared["segment"]["by_message"] == {}
