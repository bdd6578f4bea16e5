"""The Intercom look-alike: version header, search lag, 409s, attribute rules, tags and rate-limit windows."""

from __future__ import annotations

import time

import httpx

from accoil_sync.emulator import Emulator

H = {"Authorization": "Bearer tok", "Intercom-Version": "2.14"}
P = "/intercom"


async def attr(
    client: httpx.AsyncClient, name: str, model: str = "contact", data_type: str = "float"
) -> httpx.Response:
    return await client.post(
        f"{P}/data_attributes", headers=H, json={"name": name, "model": model, "data_type": data_type}
    )


async def test_data_attribute_rules(client: httpx.AsyncClient, emulator: Emulator) -> None:
    assert (await attr(client, "Accoil_Default_Score")).status_code == 200
    clash = await attr(client, "Accoil_Default_Score", "company")
    assert clash.status_code == 400
    assert clash.json()["errors"][0]["code"] == "parameter_invalid"
    assert "already have 'Accoil_Default_Score' in your contact data" in clash.json()["errors"][0]["message"]
    assert (await attr(client, "bad.name")).status_code == 400
    assert (await attr(client, "x", data_type="money")).status_code == 400
    for n in range(249):
        assert (await attr(client, f"A{n}")).status_code == 200
    full = await attr(client, "one_too_many")
    assert full.status_code == 400 and "limit of 250" in full.json()["errors"][0]["message"]
    listed = await client.get(f"{P}/data_attributes?model=contact", headers=H)
    assert len(listed.json()["data"]) == 250


async def test_contacts_409_version_and_search_lag(client: httpx.AsyncClient) -> None:
    await attr(client, "Accoil_Default_Score")
    r = await client.post(
        f"{P}/contacts",
        headers=H,
        json={
            "role": "user",
            "external_id": "u1",
            "email": "a@x.io",
            "custom_attributes": {"Accoil_Default_Score": 72},
        },
    )
    assert r.status_code == 200
    cid = r.json()["id"]
    dup = await client.post(f"{P}/contacts", headers=H, json={"role": "user", "external_id": "u1"})
    assert dup.status_code == 409
    assert dup.json()["errors"][0]["message"].endswith(f"already exists with id={cid}")
    found = await client.get(f"{P}/contacts/find_by_external_id/u1", headers=H)
    assert found.json()["id"] == cid
    old = await client.get(f"{P}/contacts/find_by_external_id/u1", headers={"Authorization": "Bearer tok"})
    assert old.status_code == 404  # an app on an older default version has no such endpoint
    search = await client.post(
        f"{P}/contacts/search",
        headers=H,
        json={"query": {"field": "external_id", "operator": "=", "value": "u1"}},
    )
    assert search.json()["total_count"] == 0  # created moments ago: not indexed yet


async def test_update_rules_and_clearing(client: httpx.AsyncClient, emulator: Emulator) -> None:
    await attr(client, "Accoil_Default_Score")
    await attr(client, "Accoil_Default_Segments", data_type="string")
    cid = (await client.post(f"{P}/contacts", headers=H, json={"role": "user", "external_id": "u1"})).json()[
        "id"
    ]
    unknown = await client.put(f"{P}/contacts/{cid}", headers=H, json={"custom_attributes": {"Nope": 1}})
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0] == {
        "code": "parameter_invalid",
        "message": "Custom attribute 'Nope' does not exist",
    }
    wrong_type = await client.put(
        f"{P}/contacts/{cid}", headers=H, json={"custom_attributes": {"Accoil_Default_Score": "x"}}
    )
    assert wrong_type.status_code == 400
    ok = await client.put(
        f"{P}/contacts/{cid}",
        headers=H,
        json={"custom_attributes": {"Accoil_Default_Score": 5, "Accoil_Default_Segments": "A"}},
    )
    assert ok.json()["custom_attributes"] == {"Accoil_Default_Score": 5, "Accoil_Default_Segments": "A"}
    # Intercom keeps null as an attribute's "unknown" and refuses "" for a number or a date (issue 14:
    # the empty string is a string-only clear); null therefore clears every type.
    empty_number = await client.put(
        f"{P}/contacts/{cid}", headers=H, json={"custom_attributes": {"Accoil_Default_Score": ""}}
    )
    assert empty_number.status_code == 400
    assert "expects a float" in empty_number.json()["errors"][0]["message"]
    await client.put(
        f"{P}/contacts/{cid}", headers=H, json={"custom_attributes": {"Accoil_Default_Score": None}}
    )
    assert emulator.intercom.state()["contacts"]["u1"]["custom_attributes"] == {
        "Accoil_Default_Segments": "A"
    }
    await client.put(
        f"{P}/contacts/{cid}", headers=H, json={"custom_attributes": {"Accoil_Default_Segments": ""}}
    )
    assert emulator.intercom.state()["contacts"]["u1"]["custom_attributes"] == {}


async def test_companies_attach_and_tags(client: httpx.AsyncClient, emulator: Emulator) -> None:
    company = (
        await client.post(f"{P}/companies", headers=H, json={"company_id": "acc_1", "name": "Acme"})
    ).json()
    again = (
        await client.post(f"{P}/companies", headers=H, json={"company_id": "acc_1", "name": "Acme Inc"})
    ).json()
    assert again["id"] == company["id"]
    cid = (await client.post(f"{P}/contacts", headers=H, json={"role": "user", "external_id": "u1"})).json()[
        "id"
    ]
    wrong = await client.post(f"{P}/contacts/{cid}/companies", headers=H, json={"id": "acc_1"})
    assert wrong.status_code == 404 and wrong.json()["errors"][0]["code"] == "company_not_found"
    assert (
        await client.post(f"{P}/contacts/{cid}/companies", headers=H, json={"id": company["id"]})
    ).status_code == 200
    tag = (await client.post(f"{P}/tags", headers=H, json={"name": "Accoil: Most Engaged"})).json()
    assert (await client.post(f"{P}/tags", headers=H, json={"name": "accoil: most engaged"})).json()[
        "id"
    ] == tag["id"]
    await client.post(f"{P}/contacts/{cid}/tags", headers=H, json={"id": tag["id"]})
    await client.post(
        f"{P}/tags", headers=H, json={"name": "Accoil: Most Engaged", "companies": [{"company_id": "acc_1"}]}
    )
    state = emulator.intercom.state()
    assert state["contacts"]["u1"]["tags"] == ["Accoil: Most Engaged"]
    assert state["contacts"]["u1"]["companies"] == ["acc_1"]
    assert state["companies"]["acc_1"]["tags"] == ["Accoil: Most Engaged"]
    await client.delete(f"{P}/contacts/{cid}/tags/{tag['id']}", headers=H)
    await client.post(
        f"{P}/tags",
        headers=H,
        json={"name": "Accoil: Most Engaged", "companies": [{"company_id": "acc_1", "untag": True}]},
    )
    state = emulator.intercom.state()
    assert state["contacts"]["u1"]["tags"] == [] and state["companies"]["acc_1"]["tags"] == []


async def test_rate_limit_headers_and_429() -> None:
    emulator = Emulator("clean", intercom_per_10s=3)
    transport = httpx.ASGITransport(app=emulator.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://e") as c:
        responses = [await c.get(f"{P}/tags", headers=H) for _ in range(4)]
        unauthorized = await c.get(f"{P}/tags")
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    reset = int(responses[0].headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 10  # a Unix timestamp, not seconds
    assert responses[-1].json()["errors"][0]["code"] == "rate_limit_exceeded"
    assert unauthorized.status_code == 401 and unauthorized.json()["type"] == "error.list"


async def test_bulk_tags_users_by_id_only_and_companies_both_ways(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    """``POST /tags``: tag_multiple_users_request takes ``users: [{"id"}]`` (Intercom ids) and has no untag
    for users; companies tag and untag in bulk; users and companies cannot be mixed (spec 2.14
    ``tag_multiple_users_request``, ``tag_company_request``, ``untag_company_request``; Intercom's tag
    docs: "Companies and user tag directives cannot be mixed in the same request")."""
    ids = [
        (await client.post(f"{P}/contacts", headers=H, json={"role": "user", "external_id": f"u{n}"})).json()[
            "id"
        ]
        for n in range(3)
    ]
    tagged = await client.post(
        f"{P}/tags", headers=H, json={"name": "Accoil: A", "users": [{"id": ids[0]}, {"id": ids[1]}]}
    )
    assert tagged.status_code == 200
    state = emulator.intercom.state()["contacts"]
    assert [state[f"u{n}"]["tags"] for n in range(3)] == [["Accoil: A"], ["Accoil: A"], []]
    untag = await client.post(
        f"{P}/tags", headers=H, json={"name": "Accoil: A", "users": [{"id": ids[0], "untag": True}]}
    )
    assert untag.status_code == 400  # not in the 2.x schema: removal is DELETE /contacts/{id}/tags/{id}
    by_external = await client.post(
        f"{P}/tags", headers=H, json={"name": "Accoil: A", "users": [{"user_id": "u2"}]}
    )
    assert by_external.status_code == 400
    missing = await client.post(f"{P}/tags", headers=H, json={"name": "Accoil: A", "users": [{"id": "nope"}]})
    assert missing.status_code == 404
    c1 = (await client.post(f"{P}/companies", headers=H, json={"company_id": "acc_1"})).json()["id"]
    mixed = await client.post(
        f"{P}/tags", headers=H, json={"name": "X", "users": [{"id": ids[0]}], "companies": [{"id": c1}]}
    )
    assert mixed.status_code == 400


async def test_email_search_ignores_case_and_takes_in(client: httpx.AsyncClient, emulator: Emulator) -> None:
    """Intercom's contact search matches emails case-insensitively; ``IN`` takes a list (string operators
    ``= != IN NIN ~ !~ ^ $``, spec 2.14 ``single_filter_search_request``)."""
    emulator.intercom.seed_messy([{"user_id": "u1", "email": "Ada@Example.com"}], [])
    hits = await client.post(
        f"{P}/contacts/search",
        headers=H,
        json={"query": {"field": "email", "operator": "IN", "value": ["ada@example.com", "x@y.io"]}},
    )
    assert [c["email"] for c in hits.json()["data"]] == ["ADA@EXAMPLE.COM"]


async def test_merged_and_deleted_contacts_answer_404(client: httpx.AsyncClient, emulator: Emulator) -> None:
    a = (await client.post(f"{P}/contacts", headers=H, json={"role": "user", "external_id": "u1"})).json()[
        "id"
    ]
    b = (await client.post(f"{P}/contacts", headers=H, json={"role": "user", "email": "b@x.io"})).json()["id"]
    emulator.intercom.merge_contact(a, b)
    assert (await client.put(f"{P}/contacts/{a}", headers=H, json={})).status_code == 404
    found = await client.get(f"{P}/contacts/find_by_external_id/u1", headers=H)
    assert found.json()["id"] == b  # the survivor took the merged contact's external_id
    emulator.intercom.delete_contact(b)
    assert (await client.get(f"{P}/contacts/{b}", headers=H)).status_code == 404


async def test_detach_company(client: httpx.AsyncClient, emulator: Emulator) -> None:
    company = (await client.post(f"{P}/companies", headers=H, json={"company_id": "acc_1"})).json()["id"]
    cid = (await client.post(f"{P}/contacts", headers=H, json={"role": "user", "external_id": "u1"})).json()[
        "id"
    ]
    await client.post(f"{P}/contacts/{cid}/companies", headers=H, json={"id": company})
    assert emulator.intercom.state()["contacts"]["u1"]["companies"] == ["acc_1"]
    detached = await client.delete(f"{P}/contacts/{cid}/companies/{company}", headers=H)
    assert detached.status_code == 200
    assert emulator.intercom.state()["contacts"]["u1"]["companies"] == []


def test_seed_messy_manifest(emulator: Emulator) -> None:
    users = [{"user_id": f"u{n}", "email": f"p{n}@x.io", "account_id": "a0"} for n in range(4)]
    accounts = [{"account_id": f"a{n}", "name": f"Co {n}", "domain": f"co{n}.io"} for n in range(3)]
    made = emulator.seed_messy(users, accounts)["intercom"]
    assert [made["contacts"][f"u{n}"]["case"] for n in range(4)] == [
        "adopt",
        "conflict",
        "ambiguous",
        "fresh",
    ]
    contacts = emulator.intercom.contacts
    adopt = contacts[made["contacts"]["u0"]["ids"][0]]
    assert adopt["email"] == "P0@X.IO" and adopt["external_id"] is None
    assert contacts[made["contacts"]["u1"]["ids"][0]]["external_id"] == "crm-1"
    assert len(made["contacts"]["u2"]["ids"]) == 2
    companies = emulator.intercom.state()["companies"]
    assert companies["a0"]["name"] == "Named By Hand" and "crm-a1" in companies
