"""The vendors' own SDKs, pointed at the emulator, create, update and read without errors: the emulator's
answers deserialise with the official models."""

from __future__ import annotations

import asyncio

import httpx
import pytest


def test_hubspot_api_client_round_trip(served: str) -> None:
    from hubspot import HubSpot
    from hubspot.crm.contacts import (
        BatchInputSimplePublicObjectBatchInputUpsert,
        SimplePublicObjectBatchInputUpsert,
        SimplePublicObjectInput,
        SimplePublicObjectInputForCreate,
    )
    from hubspot.crm.properties import PropertyCreate, PropertyGroupCreate

    client = HubSpot(access_token="pat-test", host=f"{served}/hubspot")
    # Each api property builds a new urllib3 pool (hubspot-api-client 12): keep them to close them.
    groups_api, core_api = client.crm.properties.groups_api, client.crm.properties.core_api
    basic_api, batch_api = client.crm.contacts.basic_api, client.crm.contacts.batch_api
    group = groups_api.create("contacts", PropertyGroupCreate(name="accoil", label="Accoil"))
    assert group.name == "accoil"
    prop = core_api.create(
        "contacts",
        PropertyCreate(
            name="accoil_default_score",
            label="Accoil_Default_Score",
            type="number",
            field_type="number",
            group_name="accoil",
        ),
    )
    assert prop.name == "accoil_default_score" and prop.type == "number"
    created = basic_api.create(
        SimplePublicObjectInputForCreate(properties={"email": "ada@acme.io", "accoil_default_score": "70"})
    )
    updated = basic_api.update(created.id, SimplePublicObjectInput(properties={"accoil_default_score": "71"}))
    assert updated.properties["accoil_default_score"] == "71"
    read = basic_api.get_by_id(created.id, properties=["accoil_default_score", "email"])
    assert read.properties == {"accoil_default_score": "71", "email": "ada@acme.io"}
    batch = batch_api.upsert(
        BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                SimplePublicObjectBatchInputUpsert(
                    id="ada@acme.io",
                    id_property="email",
                    object_write_trace_id="u1",
                    properties={"accoil_default_score": "72"},
                )
            ]
        )
    )
    assert batch.status == "COMPLETE" and batch.results[0].id == created.id
    for api in (groups_api, core_api, basic_api, batch_api):
        api.api_client.rest_client.pool_manager.clear()


def test_python_intercom_round_trip(served: str) -> None:
    from intercom import AsyncIntercom
    from intercom.types import CreateContactRequestWithExternalId, CreateDataAttributeRequestOne

    async def run() -> None:
        http = httpx.AsyncClient()
        client = AsyncIntercom(
            token="tok",
            base_url=f"{served}/intercom",
            headers={"Intercom-Version": "2.14"},
            httpx_client=http,
        )
        attribute = await client.data_attributes.create(
            request=CreateDataAttributeRequestOne(
                name="Accoil_Default_Score", model="contact", data_type="float"
            )
        )
        assert attribute.name == "Accoil_Default_Score"
        contact = await client.contacts.create(
            request=CreateContactRequestWithExternalId(
                external_id="u1", role="user", custom_attributes={"Accoil_Default_Score": 70}
            )
        )
        updated = await client.contacts.update(contact.id, custom_attributes={"Accoil_Default_Score": 71})
        assert updated.custom_attributes == {"Accoil_Default_Score": 71}
        found = await client.contacts.show_contact_by_external_id("u1")
        assert found.id == contact.id
        read = await client.contacts.find(contact.id)
        assert read.external_id == "u1"
        await http.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("path", ["/segment/v1/batch"])
def test_segment_sdk_delivers_to_the_emulator(served: str, path: str) -> None:
    segment = pytest.importorskip("segment.analytics")
    client = segment.Client(write_key="wk", host=f"{served}/segment", sync_mode=True)
    ok, _ = client.identify("u1", {"Accoil_Default_Score": 70})
    assert ok
    import segment.analytics.request as segment_request

    segment_request._session.close()
