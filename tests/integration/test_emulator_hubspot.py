"""The HubSpot look-alike: batch semantics, error bodies, scopes and rate-limit headers as HubSpot has them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from accoil_sync.emulator import Emulator

H = {"Authorization": "Bearer pat-test"}
BASE = "/hubspot/crm/v3"


async def setup_schema(client: httpx.AsyncClient) -> None:
    for kind in ("contacts", "companies"):
        r = await client.post(
            f"{BASE}/properties/{kind}/groups", json={"name": "accoil", "label": "Accoil"}, headers=H
        )
        assert r.status_code == 201
        for spec in (
            {
                "name": "accoil_default_score",
                "label": "Accoil_Default_Score",
                "type": "number",
                "fieldType": "number",
            },
            {
                "name": "accoil_default_lastactive",
                "label": "Accoil_Default_LastActive",
                "type": "date",
                "fieldType": "date",
            },
            {
                "name": "accoil_default_segments",
                "label": "Accoil_Default_Segments",
                "type": "enumeration",
                "fieldType": "checkbox",
                "options": [{"label": "Most Engaged", "value": "Most Engaged", "hidden": False}],
            },
        ):
            r = await client.post(
                f"{BASE}/properties/{kind}", json={**spec, "groupName": "accoil"}, headers=H
            )
            assert r.status_code == 201, r.text
    r = await client.post(
        f"{BASE}/properties/companies",
        headers=H,
        json={
            "name": "accoil_account_id",
            "label": "Accoil account id",
            "type": "string",
            "fieldType": "text",
            "groupName": "accoil",
            "hasUniqueValue": True,
        },
    )
    assert r.status_code == 201


def upsert_input(email: str, score: str = "50", trace: str | None = None, **props: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": email,
        "idProperty": "email",
        "properties": {"accoil_default_score": score, **props},
    }
    if trace:
        item["objectWriteTraceId"] = trace
    return item


async def test_properties_created_once_and_name_rules(client: httpx.AsyncClient) -> None:
    await setup_schema(client)
    again = await client.post(
        f"{BASE}/properties/contacts",
        headers=H,
        json={
            "name": "accoil_default_score",
            "label": "x",
            "type": "number",
            "fieldType": "number",
            "groupName": "accoil",
        },
    )
    assert again.status_code == 409 and again.json()["category"] == "OBJECT_ALREADY_EXISTS"
    upper = await client.post(
        f"{BASE}/properties/contacts",
        headers=H,
        json={
            "name": "Accoil_Default_Score",
            "label": "x",
            "type": "number",
            "fieldType": "number",
            "groupName": "accoil",
        },
    )
    assert upper.status_code == 400
    assert "should be lowercase" in upper.json()["message"]
    bad_field = await client.post(
        f"{BASE}/properties/contacts",
        headers=H,
        json={
            "name": "accoil_x",
            "label": "x",
            "type": "number",
            "fieldType": "checkbox",
            "groupName": "accoil",
        },
    )
    assert bad_field.status_code == 400
    patched = await client.patch(
        f"{BASE}/properties/contacts/accoil_default_segments",
        headers=H,
        json={
            "options": [
                {"label": "Most Engaged", "value": "Most Engaged"},
                {"label": "At Risk", "value": "At Risk"},
            ]
        },
    )
    assert [o["value"] for o in patched.json()["options"]] == ["Most Engaged", "At Risk"]


async def test_batch_upsert_by_email_and_values(client: httpx.AsyncClient, emulator: Emulator) -> None:
    await setup_schema(client)
    r = await client.post(
        f"{BASE}/objects/contacts/batch/upsert",
        headers=H,
        json={
            "inputs": [
                upsert_input(
                    "Ada@Acme.io",
                    accoil_default_lastactive="1795132800000",
                    accoil_default_segments="Most Engaged",
                ),
                upsert_input("grace@acme.io", "72.5"),
            ]
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "COMPLETE" and all(x["new"] for x in body["results"])
    contacts = emulator.hubspot.state()["contacts"]
    assert {c["email"] for c in contacts.values()} == {"ada@acme.io", "grace@acme.io"}
    r = await client.post(
        f"{BASE}/objects/contacts/batch/upsert",
        headers=H,
        json={"inputs": [upsert_input("ada@acme.io", "60")]},
    )
    assert r.json()["results"][0]["new"] is False
    assert len(emulator.hubspot.state()["contacts"]) == 2


@pytest.mark.parametrize(
    ("props", "code"),
    [
        ({"email": "not-an-email"}, "INVALID_EMAIL"),
        ({"accoil_default_lastactive": "1795166100000"}, "INVALID_DATE"),
        ({"accoil_default_segments": "Most Engaged;Nope"}, "INVALID_OPTION"),
        ({"accoil_nope": "1"}, "PROPERTY_DOESNT_EXIST"),
        ({"accoil_default_score": "abc"}, "INVALID_INTEGER"),
    ],
)
async def test_one_bad_input_fails_the_whole_batch_without_trace_ids(
    client: httpx.AsyncClient, emulator: Emulator, props: dict[str, str], code: str
) -> None:
    await setup_schema(client)
    good = [upsert_input(f"u{n}@x.io") for n in range(5)]
    bad = {"id": "bad@x.io", "idProperty": "email", "properties": props}
    if "email" in props:
        bad = {"id": "z@x.io", "idProperty": "email", "properties": props}
    r = await client.post(f"{BASE}/objects/contacts/batch/upsert", headers=H, json={"inputs": [*good, bad]})
    assert r.status_code == 400
    body = r.json()
    assert body["category"] == "VALIDATION_ERROR" and body["errors"][0]["code"] == code
    assert {"status", "message", "correlationId", "category"} <= set(body)
    assert emulator.hubspot.state()["contacts"] == {}  # nothing written
    traced = [{**g, "objectWriteTraceId": f"t{n}"} for n, g in enumerate(good)] + [
        {**bad, "objectWriteTraceId": "tb"}
    ]
    r = await client.post(f"{BASE}/objects/contacts/batch/upsert", headers=H, json={"inputs": traced})
    assert r.status_code == 207
    body = r.json()
    assert body["numErrors"] == 1 and body["errors"][0]["context"] == {"objectWriteTraceId": ["tb"]}
    assert sorted(x["objectWriteTraceId"] for x in body["results"]) == ["t0", "t1", "t2", "t3", "t4"]


async def test_batch_shape_errors(client: httpx.AsyncClient) -> None:
    await setup_schema(client)
    dup = await client.post(
        f"{BASE}/objects/contacts/batch/upsert",
        headers=H,
        json={"inputs": [upsert_input("a@x.io"), upsert_input("A@x.io")]},
    )
    assert dup.status_code == 400 and "Duplicate IDs" in dup.json()["message"]
    big = await client.post(
        f"{BASE}/objects/contacts/batch/upsert",
        headers=H,
        json={"inputs": [upsert_input(f"u{n}@x.io") for n in range(101)]},
    )
    assert big.status_code == 400 and "101 > 100" in big.json()["message"]
    by_email = await client.post(
        f"{BASE}/objects/contacts/batch/update", headers=H, json={"inputs": [upsert_input("a@x.io")]}
    )
    assert by_email.status_code == 400 and "non-unique 0-1 property email" in by_email.json()["message"]
    by_domain = await client.post(
        f"{BASE}/objects/companies/batch/upsert",
        headers=H,
        json={"inputs": [{"id": "acme.io", "idProperty": "domain", "properties": {"name": "Acme"}}]},
    )
    assert by_domain.status_code == 400 and "non-unique 0-2 property domain" in by_domain.json()["message"]
    by_unique = await client.post(
        f"{BASE}/objects/companies/batch/upsert",
        headers=H,
        json={
            "inputs": [
                {
                    "id": "acc_1",
                    "idProperty": "accoil_account_id",
                    "properties": {"accoil_default_score": "5"},
                }
            ]
        },
    )
    assert by_unique.status_code == 200
    company_id = by_unique.json()["results"][0]["id"]
    update = await client.post(
        f"{BASE}/objects/companies/batch/update",
        headers=H,
        json={"inputs": [{"id": company_id, "properties": {"accoil_default_score": "6"}}]},
    )
    assert (
        update.status_code == 200 and update.json()["results"][0]["properties"]["accoil_default_score"] == "6"
    )


async def test_single_create_conflict_read_and_search(client: httpx.AsyncClient) -> None:
    await setup_schema(client)
    r = await client.post(f"{BASE}/objects/contacts", headers=H, json={"properties": {"email": "a@x.io"}})
    assert r.status_code == 201
    oid = r.json()["id"]
    again = await client.post(f"{BASE}/objects/contacts", headers=H, json={"properties": {"email": "a@x.io"}})
    assert again.status_code == 409 and f"Existing ID: {oid}" in again.json()["message"]
    got = await client.get(f"{BASE}/objects/contacts/a@x.io?idProperty=email", headers=H)
    assert got.json()["id"] == oid
    found = await client.post(
        f"{BASE}/objects/contacts/search",
        headers=H,
        json={
            "filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": "a@x.io"}]}]
        },
    )
    assert found.json()["total"] == 1
    assert "X-HubSpot-RateLimit-Max" not in found.headers  # search answers carry no rate-limit headers


async def test_auth_scopes_and_rate_limit_headers() -> None:
    emulator = Emulator("clean", hubspot_tier="free")
    emulator.hubspot.tokens = {
        "pat-ok": frozenset({"crm.objects.contacts.read", "crm.objects.contacts.write"}),
        "pat-all": frozenset(__import__("accoil_sync.emulator.hubspot", fromlist=["ALL_SCOPES"]).ALL_SCOPES),
    }
    transport = httpx.ASGITransport(app=emulator.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://e") as c:
        r = await c.get(f"{BASE}/properties/contacts", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["category"] == "INVALID_AUTHENTICATION"
        r = await c.post(
            f"{BASE}/properties/contacts/groups",
            headers={"Authorization": "Bearer pat-ok"},
            json={"name": "accoil", "label": "Accoil"},
        )
        assert r.status_code == 403 and r.json()["category"] == "MISSING_SCOPES"
        statuses = []
        for _ in range(101):
            r = await c.post(
                f"{BASE}/objects/contacts/batch/read",
                headers={"Authorization": "Bearer pat-all"},
                json={"inputs": []},
            )
            statuses.append(r.status_code)
            if r.status_code == 200:
                last = r
        assert last.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        assert last.headers["X-HubSpot-RateLimit-Max"] == "100"
        assert int(last.headers["X-HubSpot-RateLimit-Daily-Remaining"]) < 250_000
        # the 401 is refused before the limiter, the 403 counts: 99 reads fit, the last two are refused
        assert statuses.count(429) == 2 and statuses[-1] == 429
        assert r.json()["policyName"] == "TEN_SECONDLY_ROLLING" and r.json()["errorType"] == "RATE_LIMIT"


# ------------------------------------------------------------------------------------ a messy portal


async def test_an_additional_email_finds_the_primary_contact(client: httpx.AsyncClient) -> None:
    """A contact's secondary addresses live in ``hs_additional_emails`` (legacydocs.hubspot.com/docs/methods/
    contacts/get-secondary-email-addresses-by-vid: "The secondary email addresses for a contact are included
    in the hs_additional_emails property"); HubSpot keeps an address on one contact, so reading by email
    with a secondary address answers with the primary record. Emails are stored lower case."""
    r = await client.post(
        f"{BASE}/objects/contacts",
        headers=H,
        json={"properties": {"email": "Primary@Acme.io", "hs_additional_emails": "old@acme.io"}},
    )
    assert r.status_code == 201 and r.json()["properties"]["email"] == "primary@acme.io"
    r = await client.post(
        f"{BASE}/objects/contacts/batch/read",
        headers=H,
        json={
            "idProperty": "email",
            "properties": ["email", "hs_additional_emails"],
            "propertiesWithHistory": [],
            "inputs": [{"id": "OLD@acme.io"}, {"id": "primary@acme.io"}],
        },
    )
    found = r.json()["results"]
    assert {c["properties"]["email"] for c in found} == {"primary@acme.io"}
    assert found[0]["properties"]["hs_additional_emails"] == "old@acme.io"
    # The address is taken: a second contact cannot be created with it.
    r = await client.post(
        f"{BASE}/objects/contacts", headers=H, json={"properties": {"email": "old@acme.io"}}
    )
    assert r.status_code == 409 and r.json()["category"] == "CONFLICT"


async def test_merge_keeps_the_primary_and_reads_of_the_old_id_answer_with_it(
    client: httpx.AsyncClient,
) -> None:
    """POST /crm/v3/objects/{type}/merge {primaryObjectId, objectIdToMerge} (developers.hubspot.com/docs/
    api-reference/crm-contacts-v3/basic/post-crm-v3-objects-contacts-merge); the survivor's
    ``hs_merged_object_ids`` lists the merged-away ids (HubSpot/hubspot-api-nodejs#6), a read of an old id
    answers with the survivor, and the merged-away email stays on it as an additional email. A write by the
    old id is OBJECT_NOT_FOUND here [U: HubSpot does not document it; the connector handles both]."""
    ids = []
    for email in ("keep@x.io", "gone@x.io"):
        r = await client.post(f"{BASE}/objects/contacts", headers=H, json={"properties": {"email": email}})
        ids.append(r.json()["id"])
    r = await client.post(
        f"{BASE}/objects/contacts/merge",
        headers=H,
        json={"primaryObjectId": ids[0], "objectIdToMerge": ids[1]},
    )
    assert r.status_code == 200 and r.json()["id"] == ids[0]
    assert r.json()["properties"]["hs_merged_object_ids"] == ids[1]
    r = await client.post(
        f"{BASE}/objects/contacts/batch/read",
        headers=H,
        json={
            "properties": ["hs_merged_object_ids"],
            "propertiesWithHistory": [],
            "inputs": [{"id": ids[1]}],
        },
    )
    assert [c["id"] for c in r.json()["results"]] == [ids[0]]
    r = await client.post(
        f"{BASE}/objects/contacts/batch/read",
        headers=H,
        json={
            "idProperty": "email",
            "properties": [],
            "propertiesWithHistory": [],
            "inputs": [{"id": "gone@x.io"}],
        },
    )
    assert [c["id"] for c in r.json()["results"]] == [ids[0]]
    r = await client.post(
        f"{BASE}/objects/contacts/batch/update",
        headers=H,
        json={"inputs": [{"id": ids[1], "objectWriteTraceId": "k", "properties": {"firstname": "x"}}]},
    )
    assert r.status_code == 207 and r.json()["errors"][0]["category"] == "OBJECT_NOT_FOUND"


async def test_deleted_records_are_not_found_by_id_email_or_search(client: httpx.AsyncClient) -> None:
    """DELETE /crm/v3/objects/{type}/{id} archives a record (204); it is no longer read or searched."""
    r = await client.post(
        f"{BASE}/objects/companies", headers=H, json={"properties": {"name": "Old", "domain": "old.io"}}
    )
    cid = r.json()["id"]
    assert (await client.delete(f"{BASE}/objects/companies/{cid}", headers=H)).status_code == 204
    assert (await client.get(f"{BASE}/objects/companies/{cid}", headers=H)).status_code == 404
    r = await client.post(
        f"{BASE}/objects/companies/search",
        headers=H,
        json={
            "filterGroups": [{"filters": [{"propertyName": "domain", "operator": "EQ", "value": "old.io"}]}]
        },
    )
    assert r.json()["total"] == 0


def test_seed_messy_makes_the_traps_from_the_source_rows(emulator: Emulator) -> None:
    users = [{"user_id": f"u{n}", "email": f"p{n}@acme.io"} for n in range(4)]
    accounts = [{"account_id": f"a{n}", "name": f"A{n}", "domain": f"d{n}.io"} for n in range(4)]
    made = emulator.seed_messy(users, accounts)["hubspot"]
    hub = emulator.hubspot
    assert set(made["existing_contacts"]) == {"u0"} and set(made["additional_email"]) == {"u1"}
    assert made["deleted_contacts"]["u2"] not in hub.objects["contacts"]
    assert (
        hub.objects["contacts"][made["additional_email"]["u1"]]["properties"]["hs_additional_emails"]
        == "p1@acme.io"
    )
    assert hub.objects["companies"][made["existing_companies"]["a0"]]["properties"]["domain"] == "www.D0.IO"
    assert len(made["ambiguous_domain"]["a1"]) == 2 and set(made["existing_companies"]) == {"a0", "a3"}


async def test_an_archived_property_makes_writes_naming_it_fail(client: httpx.AsyncClient) -> None:
    """DELETE /crm/v3/properties/{type}/{name} archives a property (properties API); a write naming it then
    fails with PROPERTY_DOESNT_EXIST, 'Property "x" does not exist' (/work/shared/reference/hubspot.md,
    section 1, the observed body)."""
    await setup_schema(client)
    r = await client.delete(f"{BASE}/properties/contacts/accoil_default_score", headers=H)
    assert r.status_code == 204
    item = {"id": "a@x.io", "idProperty": "email", "objectWriteTraceId": "u1"}
    score = {"accoil_default_score": "5"}
    r = await client.post(
        f"{BASE}/objects/contacts/batch/upsert", headers=H, json={"inputs": [{**item, "properties": score}]}
    )
    error = r.json()["errors"][0]
    assert r.status_code == 207 and error["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"
    assert 'Property "accoil_default_score" does not exist' in error["message"]
    built_in = await client.delete(f"{BASE}/properties/contacts/email", headers=H)
    assert built_in.status_code == 400  # HubSpot's own properties are not archivable ([U]: the exact answer)
