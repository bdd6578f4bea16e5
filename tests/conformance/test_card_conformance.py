"""The card's responses against HubSpot's published shapes: the v3 payload against
``IntegratorCardPayloadResponse`` in ../shared/specs, the classic payload against the legacy-card
converter's types (transcribed in ../shared/reference/hubspot.md section 5a, as no spec publishes them)."""

from __future__ import annotations

import httpx
import pytest
from jsonschema import Draft202012Validator

from tests.conformance.specs import validate
from tests.integration.conftest import signed

SPEC = "hubspot/crm-public-app-cards-v3.json"
QUERIES = [
    "?associatedObjectType=CONTACT&associatedObjectId=11&email=ada@acme.io",
    "?associatedObjectType=COMPANY&associatedObjectId=12&domain=initech.com",
    "?associatedObjectType=CONTACT&associatedObjectId=13&email=nobody@example.org",
]

_PROPERTY = {
    "type": "object",
    "required": ["label", "dataType", "value"],
    "properties": {
        "label": {"type": "string"},
        "dataType": {
            "enum": ["STRING", "STATUS", "NUMERIC", "DATETIME", "DATE", "LINK", "CURRENCY", "EMAIL"]
        },
        "value": {"type": "string"},
        "optionType": {"enum": ["DEFAULT", "SUCCESS", "WARNING", "DANGER", "INFO"]},
    },
    "allOf": [
        {"if": {"properties": {"dataType": {"const": "STATUS"}}}, "then": {"required": ["optionType"]}},
        {
            "if": {"properties": {"dataType": {"const": "DATE"}}},
            "then": {"properties": {"value": {"pattern": r"^\d{4}-\d{2}-\d{2}$"}}},
        },
    ],
    "additionalProperties": False,
}
_ACTION = {
    "type": "object",
    "required": ["type", "uri", "label"],
    "properties": {
        "type": {"enum": ["IFRAME", "ACTION_HOOK", "CONFIRMATION_ACTION_HOOK"]},
        "uri": {"type": "string", "pattern": "^https://"},
        "label": {"type": "string"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
    },
}
CLASSIC = {
    "type": "object",
    "required": ["results"],
    "properties": {
        "results": {
            "type": "array",
            "maxItems": 5,
            "items": {
                "type": "object",
                "required": ["objectId", "title"],
                "properties": {
                    "objectId": {"type": "integer"},
                    "title": {"type": "string"},
                    "link": {"type": "string"},
                    "properties": {"type": "array", "items": _PROPERTY},
                },
            },
        },
        "primaryAction": _ACTION,
        "secondaryActions": {"type": "array", "items": _ACTION},
    },
    "additionalProperties": False,
}


def _classic(payload: object) -> None:
    errors = list(Draft202012Validator(CLASSIC).iter_errors(payload))
    assert not errors, [e.message for e in errors]


FORMATS = {
    "/card/crm/v3": lambda payload: validate(SPEC, "IntegratorCardPayloadResponse", payload),
    "/card/crm": _classic,
}


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("endpoint", list(FORMATS))
async def test_card_payloads_match_hubspots_formats(
    card_client: httpx.AsyncClient, endpoint: str, query: str
) -> None:
    path = endpoint + query
    response = await card_client.get(path, headers=signed(path))
    assert response.status_code == 200
    FORMATS[endpoint](response.json())
