"""The card backend: signatures, lookups, the three response formats, the details page."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import CARD_SECRET, PUBLIC, signed

FIXTURES = Path(__file__).resolve().parents[2] / "hubspot-app/src/app/cards/fixtures"
CONTACT = "/card/crm?associatedObjectType=CONTACT&associatedObjectId=101&portalId=62515&email=ada@acme.io"


async def get(client: httpx.AsyncClient, path: str, **kwargs: Any) -> httpx.Response:
    return await client.get(path, headers=signed(path, **kwargs))


async def test_a_valid_v3_signature_gets_the_contact_card(card_client: httpx.AsyncClient) -> None:
    from hubspot.utils.signature import Signature

    headers = signed(CONTACT)
    assert Signature.is_valid(  # the oracle agrees the request is signed as HubSpot would sign it
        headers["X-HubSpot-Signature-v3"],
        CARD_SECRET,
        "",
        http_uri=PUBLIC + CONTACT,
        http_method="GET",
        signature_version="v3",
        timestamp=headers["X-HubSpot-Request-Timestamp"],
    )
    response = await card_client.get(CONTACT, headers=headers)
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["objectId"] == 101
    props = {p["label"]: p for p in result["properties"]}
    assert props["Engagement score"] == {"label": "Engagement score", "dataType": "NUMERIC", "value": "92"}
    assert props["Segments"]["value"] == "Champions, Most Engaged"
    assert props["Segments"]["dataType"] == "STATUS" and props["Segments"]["optionType"] == "SUCCESS"
    assert props["Activation"]["value"] == "100%"
    assert props["Adoption (recent)"]["value"] == "85.5%"
    assert props["Last active"] == {"label": "Last active", "dataType": "DATE", "value": "2026-11-20"}
    assert props["Frequency"]["value"] == "7 of 7 days"
    assert "Active users" not in props  # accounts only
    assert result["link"].startswith(f"{PUBLIC}/card/details/user/u_001?")
    assert response.json()["primaryAction"]["type"] == "IFRAME"


@pytest.mark.parametrize(
    "case",
    ["wrong secret", "stale", "far future", "missing header", "missing timestamp", "tampered query"],
)
async def test_bad_signatures_get_401_and_no_data(card_client: httpx.AsyncClient, case: str) -> None:
    now = int(time.time() * 1000)
    headers = {
        "wrong secret": signed(CONTACT, secret="not-the-secret"),
        "stale": signed(CONTACT, at_ms=now - 301_000),
        "far future": signed(CONTACT, at_ms=now + 10 * 60_000),
        "missing header": {},
        "missing timestamp": {"X-HubSpot-Signature-v3": signed(CONTACT)["X-HubSpot-Signature-v3"]},
        "tampered query": signed(CONTACT.replace("ada@", "grace@")),
    }[case]
    response = await card_client.get(CONTACT, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid or missing HubSpot signature"}


async def test_a_small_clock_skew_into_the_future_is_accepted(card_client: httpx.AsyncClient) -> None:
    response = await get(card_client, CONTACT, at_ms=int(time.time() * 1000) + 20_000)
    assert response.status_code == 200


async def test_a_tampered_post_body_is_refused(card_client: httpx.AsyncClient) -> None:
    body = '{"objectType": "CONTACT", "objectId": "101", "email": "ada@acme.io"}'
    headers = signed("/card/app", body=body, method="POST")
    ok = await card_client.post("/card/app", content=body, headers=headers)
    assert ok.status_code == 200 and ok.json()["found"] is True
    tampered = body.replace("ada@", "grace@")
    refused = await card_client.post("/card/app", content=tampered, headers=headers)
    assert refused.status_code == 401


@pytest.mark.parametrize(
    ("sent", "signed_as", "status"),
    [
        # HubSpot signs the URI with these escapes decoded: %40 -> @, %3A -> :, lower-case hex too
        ("&email=ada%40acme.io", "&email=ada@acme.io", 200),
        ("&email=ada%40acme.io&x=a%3ab", "&email=ada@acme.io&x=a:b", 200),
        # escapes outside HubSpot's list stay as sent
        ("&email=ada@acme.io&note=a%20b", "&email=ada@acme.io&note=a%20b", 200),
        # a signer that did not decode (as the SDK helper does not) is not HubSpot
        ("&email=ada%40acme.io", "&email=ada%40acme.io", 401),
    ],
)
async def test_percent_encoded_uris_are_decoded_as_hubspot_specifies(
    card_client: httpx.AsyncClient, sent: str, signed_as: str, status: int
) -> None:
    base = "/card/crm?associatedObjectType=CONTACT&associatedObjectId=101"
    response = await card_client.get(base + sent, headers=signed(base + sent, signed_path=base + signed_as))
    assert response.status_code == status
    if status == 200:
        assert response.json()["results"][0]["link"].startswith(f"{PUBLIC}/card/details/user/u_001?")


async def test_an_unknown_object_is_an_empty_result_in_every_format(card_client: httpx.AsyncClient) -> None:
    query = "?associatedObjectType=CONTACT&associatedObjectId=999&email=nobody@nowhere.io"
    assert (await get(card_client, "/card/crm" + query)).json() == {"results": []}
    assert (await get(card_client, "/card/app" + query)).json() == {"found": False, "profiles": []}
    v3 = (await get(card_client, "/card/crm/v3" + query)).json()
    assert v3["totalCount"] == 0 and v3["sections"] == []


async def test_company_card_by_domain_and_by_our_id(card_client: httpx.AsyncClient) -> None:
    by_domain = await get(
        card_client, "/card/app?associatedObjectType=COMPANY&associatedObjectId=5&domain=www.Acme.io"
    )
    by_id = await get(card_client, "/card/app?associatedObjectType=COMPANY&accoil_account_id=acc_acme")
    assert by_domain.status_code == by_id.status_code == 200
    assert by_domain.json() == by_id.json() | {"details_url": by_domain.json()["details_url"]}
    card = by_id.json()
    assert card["object"] == {
        "kind": "account",
        "key": "acc_acme",
        "name": "Acme Corp",
        "updated_at": card["object"]["updated_at"],
    }
    (profile,) = card["profiles"]
    assert profile["score"] == 88
    assert profile["segments"] == [{"name": "Most Engaged", "state": "SUCCESS"}]
    assert profile["frequency"] == {"days": 7, "window": 7, "label": "7 of 7 days"}
    assert (profile["active_users"], profile["total_users"]) == (2, 3)
    classic = (
        await get(card_client, "/card/crm?associatedObjectType=COMPANY&accoil_account_id=acc_initech")
    ).json()
    props = {p["label"]: p for p in classic["results"][0]["properties"]}
    assert props["Active users"]["value"] == "1 of 5"
    assert props["Segments"] == {  # At Risk is WARNING, Dormant DANGER: the more pressing colour shows
        "label": "Segments",
        "dataType": "STATUS",
        "value": "At Risk, Dormant",
        "optionType": "DANGER",
    }


async def test_contact_found_by_the_hubspot_record_id_our_sync_stored(
    card_client: httpx.AsyncClient, card_settings: Any
) -> None:
    from accoil_sync.sync.state import StateStore

    store = StateStore(card_settings.state.path)
    with store.transaction() as db:
        db.execute(
            "INSERT INTO records (destination, kind, key, fingerprint, dest_id, updated_at) "
            "VALUES ('hubspot', 'user', 'u_002', 'x', '7001', 'now')"
        )
    store.close()
    response = await get(card_client, "/card/app?associatedObjectType=CONTACT&associatedObjectId=7001")
    assert response.json()["object"]["key"] == "u_002"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?associatedObjectId=1", "missing associatedObjectType"),
        ("?associatedObjectType=DEAL&associatedObjectId=1", "unsupported object type"),
        ("?associatedObjectType=CONTACT&associatedObjectId=abc", "must be a HubSpot record id"),
    ],
)
async def test_bad_requests_get_400_with_the_reason(
    card_client: httpx.AsyncClient, query: str, message: str
) -> None:
    response = await get(card_client, "/card/crm" + query)
    assert response.status_code == 400
    assert message in response.json()["error"]


async def test_a_signed_post_with_a_broken_body_gets_400(card_client: httpx.AsyncClient) -> None:
    response = await card_client.post(
        "/card/app", content="{not json", headers=signed("/card/app", body="{not json", method="POST")
    )
    assert response.status_code == 400


async def test_v2_signatures_only_when_configured(
    card_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hubspot.utils.signature import Signature

    from accoil_sync.serve.app import create_app

    headers = {
        "X-HubSpot-Signature": Signature.get_signature(
            CARD_SECRET, "", "v2", http_uri=PUBLIC + CONTACT, http_method="GET"
        ),
        "X-HubSpot-Signature-Version": "v2",
    }
    for versions, status in ((["v3"], 401), (["v3", "v2"], 200)):
        settings = card_settings.model_copy(
            update={"serve": card_settings.serve.model_copy(update={"signature_versions": versions})}
        )
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC) as c:
            assert (await c.get(CONTACT, headers=headers)).status_code == status


async def test_details_page_needs_our_signed_link(card_client: httpx.AsyncClient) -> None:
    card = (await get(card_client, "/card/app?associatedObjectType=CONTACT&email=ada@acme.io")).json()
    url = httpx.URL(card["details_url"])
    page = await card_client.get(url)
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert '<svg class="history"' in page.text and 'data-points="1"' in page.text
    tampered = url.copy_set_param("sig", "A" * 24)
    assert (await card_client.get(tampered)).status_code == 401
    expired = url.copy_set_param("exp", str(int(time.time()) - 1))
    assert (await card_client.get(expired)).status_code == 401
    other = httpx.URL(str(url).replace("/user/u_001", "/user/u_002"))
    assert (await card_client.get(other)).status_code == 401  # a link opens only its own object


async def test_without_a_client_secret_the_card_answers_503(card_settings: Any) -> None:
    from accoil_sync.serve.app import create_app

    settings = card_settings.model_copy(
        update={"serve": card_settings.serve.model_copy(update={"hubspot_client_secret": None})}
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC) as c:
        response = await c.get(CONTACT, headers=signed(CONTACT))
    assert response.status_code == 503
    assert "serve.hubspot_client_secret" in response.json()["error"]


def _shape(value: Any) -> Any:
    """Keys and value types, recursively; lists by their first item."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return (
        "number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__
    )


@pytest.mark.parametrize(
    ("fixture", "query"),
    [
        ("contact.json", "?associatedObjectType=CONTACT&email=ada@acme.io"),
        ("company.json", "?associatedObjectType=COMPANY&accoil_account_id=acc_initech"),
        ("empty.json", "?associatedObjectType=CONTACT&email=nobody@example.org"),
    ],
)
async def test_the_app_cards_test_fixtures_have_the_backends_shape(
    card_client: httpx.AsyncClient, fixture: str, query: str
) -> None:
    """The Vitest suite renders these fixtures; they must keep matching what /card/app really sends."""
    real = (await get(card_client, "/card/app" + query)).json()
    assert _shape(json.loads((FIXTURES / fixture).read_text())) == _shape(real)


def test_configured_segment_states_override_the_built_in_colours_case_insensitively() -> None:
    from accoil_sync.card.view import segment_state, segment_table

    table = segment_table({"VIP": "SUCCESS", "At Risk": "DANGER"})
    assert segment_state("vip ", table) == "SUCCESS"
    assert segment_state("AT RISK", table) == "DANGER"  # was WARNING built in
    assert segment_state("Dormant", table) == "DANGER"  # built in, untouched
    assert segment_state("Something else", table) == "DEFAULT"


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"accoil_user_id": "u_001"}, "u_001"),
        ({"email": "ADA@acme.io"}, "u_001"),
        ({"objectType": "COMPANY", "accoil_account_id": "acc_acme"}, "acc_acme"),
        ({"objectType": "COMPANY", "domain": "https://www.acme.io/"}, "acc_acme"),
    ],
)
async def test_a_card_only_setup_finds_the_object_by_what_the_app_card_sends(
    card_client: httpx.AsyncClient, body: dict[str, str], key: str
) -> None:
    """With only the ``card`` destination no HubSpot record id was ever stored: the app card's signed body
    carries the record's own id, email or domain (read with useCrmProperties), and that finds it."""
    payload = json.dumps({"objectType": "CONTACT", "objectId": "987654321", **body})
    response = await card_client.post(
        "/card/app", content=payload, headers=signed("/card/app", body=payload, method="POST")
    )
    assert response.status_code == 200
    assert response.json()["found"] is True and response.json()["object"]["key"] == key
    bare = json.dumps({"objectType": body.get("objectType", "CONTACT"), "objectId": "987654321"})
    unknown = await card_client.post(
        "/card/app", content=bare, headers=signed("/card/app", body=bare, method="POST")
    )
    assert unknown.json()["found"] is False  # the record id alone finds nothing in a card-only setup
