from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from accoil_sync.emulator import Emulator, EmulatorServer


@pytest.fixture
def emulator() -> Emulator:
    return Emulator("clean", seed=7)


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    """In-process: the emulator's ASGI app behind httpx, no sockets."""
    transport = httpx.ASGITransport(app=emulator.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as c:
        yield c


@pytest.fixture
def served(emulator: Emulator) -> Iterator[str]:
    """The same emulator on a real loopback port (for SDKs that bring their own HTTP stack)."""
    with EmulatorServer(emulator) as url:
        yield url


def call(emulator: Emulator, method: str, path: str, **kwargs: object) -> httpx.Response:
    """One request straight to the emulator's app, to set a scene before a test."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=emulator.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as c:
            return await c.request(method, path, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(go())


def destination_section(served: str, vendor: str, **settings: object) -> str:
    """A ``[destinations.<vendor>]`` TOML section aimed at the emulator (strings, booleans and numbers)."""
    lines = [f"[destinations.{vendor}]", "enabled = true", f'base_url = "{served}/{vendor}"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return "\n" + "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- the card

CARD_SECRET = "card-client-secret-for-tests"
PUBLIC = "https://cards.example.com"


@pytest.fixture
def card_settings(examples: object, make_settings: object, monkeypatch: pytest.MonkeyPatch) -> object:
    """The shipped example synced into the card store; the app's client secret set in the env."""
    from accoil_sync.sync.runner import execute

    monkeypatch.setenv("ACCOIL_SYNC_SERVE__HUBSPOT_CLIENT_SECRET", CARD_SECRET)
    settings = make_settings(  # type: ignore[operator]
        users="examples/users.csv",
        accounts="examples/accounts.csv",
        extra=f'[destinations.card]\nenabled = true\n[serve]\npublic_url = "{PUBLIC}"\n',
    )
    result = asyncio.run(execute(settings, deliver=True, destinations=["card"]))
    assert result.deliveries["card"].counts == {"ok": 7 + 4}, result.to_json()  # the example's valid objects
    return settings


@pytest.fixture
async def card_client(card_settings: object) -> AsyncIterator[httpx.AsyncClient]:
    from accoil_sync.serve.app import create_app

    app = create_app(card_settings)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC) as c:
        yield c


def signed(
    path: str,
    *,
    body: str = "",
    method: str = "GET",
    secret: str = CARD_SECRET,
    at_ms: int | None = None,
    signed_path: str | None = None,
) -> dict[str, str]:
    """v3 headers made by hubspot-api-client's own helper: an independent oracle for the happy path."""
    import time

    from hubspot.utils.signature import Signature

    stamp = str(int(time.time() * 1000) if at_ms is None else at_ms)
    signature = Signature.get_signature(
        secret, body, "v3", http_uri=PUBLIC + (signed_path or path), http_method=method, timestamp=stamp
    )
    return {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": stamp}
