from __future__ import annotations

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
