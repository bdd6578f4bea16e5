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
