"""The emulator's answers validate against the vendors' published response schemas."""

from __future__ import annotations

import httpx

from tests.conformance.specs import validate
from tests.integration.test_emulator_hubspot import BASE, H, setup_schema, upsert_input
from tests.integration.test_emulator_intercom import H as IH

CONTACTS = "hubspot/crm-contacts-v3.json"
COMPANIES = "hubspot/crm-companies-v3.json"
PROPERTIES = "hubspot/crm-properties-v3.json"
INTERCOM = "intercom/api.intercom.io-2.14.yaml"


async def test_hubspot_responses(client: httpx.AsyncClient) -> None:
    await setup_schema(client)
    groups = await client.get(f"{BASE}/properties/contacts/groups", headers=H)
    validate(PROPERTIES, "CollectionResponsePropertyGroupNoPaging", groups.json())
    props = await client.get(f"{BASE}/properties/contacts", headers=H)
    validate(PROPERTIES, "CollectionResponsePropertyNoPaging", props.json())
    dup = await client.post(
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
    validate(PROPERTIES, "Error", dup.json())
    ok = await client.post(
        f"{BASE}/objects/contacts/batch/upsert", headers=H, json={"inputs": [upsert_input("a@x.io")]}
    )
    validate(CONTACTS, "BatchResponseSimplePublicUpsertObject", ok.json())
    partial = await client.post(
        f"{BASE}/objects/contacts/batch/upsert",
        headers=H,
        json={"inputs": [upsert_input("b@x.io", trace="t1"), upsert_input("c@x.io", "abc", trace="t2")]},
    )
    assert partial.status_code == 207
    validate(CONTACTS, "BatchResponseSimplePublicUpsertObjectWithErrors", partial.json())
    bad = await client.post(
        f"{BASE}/objects/contacts/batch/upsert", headers=H, json={"inputs": [upsert_input("d@x.io", "abc")]}
    )
    validate(CONTACTS, "Error", bad.json())
    created = await client.post(f"{BASE}/objects/companies", headers=H, json={"properties": {"name": "Acme"}})
    validate(COMPANIES, "SimplePublicObject", created.json())
    update = await client.post(
        f"{BASE}/objects/companies/batch/update",
        headers=H,
        json={"inputs": [{"id": created.json()["id"], "properties": {"name": "Acme Inc"}}]},
    )
    validate(COMPANIES, "BatchResponseSimplePublicObject", update.json())


async def test_intercom_responses(client: httpx.AsyncClient) -> None:
    attribute = await client.post(
        "/intercom/data_attributes",
        headers=IH,
        json={"name": "Accoil_Default_Score", "model": "contact", "data_type": "float"},
    )
    validate(INTERCOM, "data_attribute", attribute.json())
    listed = await client.get("/intercom/data_attributes", headers=IH)
    validate(INTERCOM, "data_attribute_list", listed.json())
    contact = await client.post(
        "/intercom/contacts",
        headers=IH,
        json={
            "role": "user",
            "external_id": "u1",
            "email": "a@x.io",
            "custom_attributes": {"Accoil_Default_Score": 7},
        },
    )
    validate(INTERCOM, "contact", contact.json())
    conflict = await client.post("/intercom/contacts", headers=IH, json={"role": "user", "external_id": "u1"})
    validate(INTERCOM, "error", conflict.json())
    company = await client.post(
        "/intercom/companies", headers=IH, json={"company_id": "acc_1", "name": "Acme"}
    )
    validate(INTERCOM, "company", company.json())
    tag = await client.post("/intercom/tags", headers=IH, json={"name": "Accoil: Most Engaged"})
    validate(INTERCOM, "tag", tag.json())
    tags = await client.get("/intercom/tags", headers=IH)
    validate(INTERCOM, "tag_list", tags.json())
