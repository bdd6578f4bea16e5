"""The card and details endpoints refuse malformed input with a 4xx, never a 500 or a traceback.

Numbers are ASCII digits of a bounded length (``'²'.isdigit()`` is true and ``int()`` of 5,000 digits
raises); bodies are capped at HubSpot's documented 1 MB for ``hubspot.fetch`` payloads
(docs/guides/crm/public-apps/fetching-data, /work/shared/reference/hubspot.md section 5d) before any work,
the signature check included; and a seeded fuzz run over every endpoint finds no 500.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from accoil_sync.card.limits import MAX_BODY_BYTES
from tests.integration.conftest import PUBLIC, signed

CONTACT = "/card/crm?associatedObjectType=CONTACT&associatedObjectId=101&email=ada@acme.io"
HUGE = "9" * 5000
NASTY_NUMBERS = ["²", "١٢٣", HUGE, "-1", "+5", " 5", "1e3", "0x10", "", "5\x00"]


@pytest.fixture
async def strict_client(card_settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``card_client`` but a crash is a 500 response, as a real server would send, not an exception."""
    from accoil_sync.serve.app import create_app

    transport = httpx.ASGITransport(app=create_app(card_settings), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC) as c:
        yield c


def raw(value: str) -> bytes:
    """A header value as bytes on the wire: latin-1 where it can be (``'²'`` is 0xB2), else UTF-8."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    crashed = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not crashed, crashed[0].getMessage()


@pytest.mark.parametrize("stamp", NASTY_NUMBERS)
async def test_a_malformed_timestamp_is_a_401(
    strict_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, stamp: str
) -> None:
    headers: dict[str, str | bytes] = {**signed(CONTACT), "X-HubSpot-Request-Timestamp": raw(stamp)}
    response = await strict_client.get(CONTACT, headers=headers)
    assert response.status_code == 401
    no_traceback(caplog)


@pytest.mark.parametrize("object_id", [*NASTY_NUMBERS[:4], "1" * 21])
async def test_a_malformed_record_id_is_a_400_even_when_signed(
    strict_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, object_id: str
) -> None:
    path = f"/card/crm?associatedObjectType=CONTACT&associatedObjectId={quote(object_id)}"
    response = await strict_client.get(path, headers=signed(path))
    assert response.status_code == 400, response.text
    assert "record id" in response.json()["error"]
    body = f'{{"objectType": "CONTACT", "objectId": "{object_id}"}}'
    posted = await strict_client.post(
        "/card/app", content=body, headers=signed("/card/app", body=body, method="POST")
    )
    assert posted.status_code == 400, posted.text
    no_traceback(caplog)


@pytest.mark.parametrize(
    "body", ['{"objectType": "CONTACT", "objectId": ' + HUGE + "}", '{"objectId": 1e999}']
)
async def test_a_numeric_json_record_id_out_of_range_is_a_400(
    strict_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, body: str
) -> None:
    response = await strict_client.post(
        "/card/app", content=body, headers=signed("/card/app", body=body, method="POST")
    )
    assert response.status_code == 400, response.text
    no_traceback(caplog)


@pytest.mark.parametrize("exp", NASTY_NUMBERS)
async def test_a_malformed_details_expiry_is_a_401(
    strict_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, exp: str
) -> None:
    card = (await strict_client.get(CONTACT, headers=signed(CONTACT))).json()
    url = httpx.URL(card["results"][0]["link"])
    assert (await strict_client.get(url)).status_code == 200  # the link as issued works
    response = await strict_client.get(url.copy_set_param("exp", exp))
    assert response.status_code == 401
    no_traceback(caplog)


async def test_an_oversized_body_is_refused_before_the_signature_check(
    strict_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    big = b'{"objectType": "CONTACT", "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    declared = await strict_client.post("/card/app", content=big, headers={"X-HubSpot-Signature-v3": "x"})
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read only up to the cap
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536

    streamed = await strict_client.post("/card/app", content=chunks())
    assert streamed.status_code == 413
    assert not [r for r in caplog.records if "refused" in r.getMessage()]  # the signature was never checked
    at_limit = (
        b'{"objectType": "CONTACT", "email": "ada@acme.io", "p": "' + b"x" * (MAX_BODY_BYTES - 100) + b'"}'
    )
    ok = await strict_client.post(
        "/card/app", content=at_limit, headers=signed("/card/app", body=at_limit.decode(), method="POST")
    )
    assert ok.status_code == 200 and ok.json()["found"] is True  # a body within HubSpot's limit still works
    no_traceback(caplog)


# ------------------------------------------------------------------------------------------------ fuzz

_VALUES = [
    *NASTY_NUMBERS,
    "101",
    "0",
    "9" * 19,
    "CONTACT",
    "COMPANY",
    "0-1",
    "0-2",
    "contacts",
    "deal",
    "ada@acme.io",
    "Ada@ACME.io",
    "acme.io",
    "https://www.acme.io/x",
    "u_001",
    "a_001",
    "%",
    "%zz",
    "%ff%fe",
    "\u2603",
    "\ud7ff",
    "😀" * 300,
    "'; DROP TABLE card_objects;--",
    "<script>",
    "../../etc/passwd",
    "null",
    "[]",
    "{}",
    "x" * 600,
    " ",
]
_NAMES = [
    "associatedObjectType",
    "associatedObjectId",
    "objectType",
    "objectTypeId",
    "objectId",
    "email",
    "domain",
    "accoil_user_id",
    "accoil_account_id",
    "portalId",
    "userId",
    "exp",
    "sig",
    "x",
]
_PATHS = [
    "/card/crm",
    "/card/crm/v3",
    "/card/app",
    "/card/details/user/u_001",
    "/card/details/account/a_001",
    "/card/details/user/%2F..%2F",
    "/card/details/nobody/x",
    "/healthz",
    "/readyz",
    "/metrics",
    "/syncs/trigger",
    "/syncs/x",
    "/nowhere",
]


def _json_value(rng: random.Random) -> Any:
    return rng.choice([rng.choice(_VALUES), rng.randint(-(10**30), 10**30), None, 1.5, True, [1], {"a": 1}])


async def test_fuzzing_every_endpoint_finds_no_500_and_no_traceback(
    strict_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rng = random.Random(16)
    statuses: dict[int, int] = {}
    started = time.monotonic()
    for _ in range(2000):
        path = rng.choice(_PATHS)
        params = {rng.choice(_NAMES): rng.choice(_VALUES) for _ in range(rng.randint(0, 5))}
        query = "&".join(f"{quote(k)}={quote(v, safe=rng.choice(['', '@:%']))}" for k, v in params.items())
        target = path + (f"?{query}" if query else "")
        method = rng.choice(["GET", "GET", "POST", "PUT", "DELETE"])
        body = ""
        if method == "POST":
            body = rng.choice(
                [
                    json.dumps({rng.choice(_NAMES): _json_value(rng) for _ in range(rng.randint(0, 5))}),
                    rng.choice(_VALUES),
                    '{"a": ' * 300,
                ]
            )
        headers: dict[str, str | bytes] = {}
        if rng.random() < 0.7:
            headers.update(signed(target, body=body, method=method))
        if rng.random() < 0.2:
            headers["X-HubSpot-Request-Timestamp"] = raw(rng.choice(NASTY_NUMBERS))
        if rng.random() < 0.1:
            headers["Authorization"] = b"Bearer " + raw(rng.choice(_VALUES))
        response = await strict_client.request(method, target, content=body.encode(), headers=headers)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500 or response.status_code == 503, (
            method,
            target,
            body[:200],
            response.text,
        )
    assert time.monotonic() - started < 60
    assert statuses.get(200, 0) > 20 and statuses.get(400, 0) > 20, statuses  # it reached the lookups
    no_traceback(caplog)
