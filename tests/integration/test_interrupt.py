"""Ctrl-C mid-delivery: the batches in flight are cancelled with the run, not left to meet a closed client
and die as "Task exception was never retrieved" tracebacks."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from typing import Any

import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.connectors import Connector, build_connector
from accoil_sync.connectors.base import Capabilities, Change, Outcome
from accoil_sync.sync.runner import execute
from accoil_sync.traits.encoders import Encoder, TraitsEncoder
from accoil_sync.traits.names import ObjectKind
from tests.conftest import WriteConfig


class Slow:
    name = "jsonl"

    def __init__(self) -> None:
        self.capabilities = Capabilities(max_batch=1, max_concurrency=4)
        self.encoder: Encoder = TraitsEncoder()
        self.closed = False
        self.started = asyncio.Event()

    async def ensure_schema(self) -> None:
        return None

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        self.started.set()
        for _ in range(50):
            await asyncio.sleep(0.01)
            if self.closed:
                raise RuntimeError("Cannot send a request, as the client has been closed.")
        return [Outcome.ok(c.key) for c in batch]

    async def aclose(self) -> None:
        self.closed = True


async def test_an_interrupted_run_leaves_no_task_behind(
    examples: object, make_settings: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(users="examples/users.csv", accounts="examples/accounts.csv")
    slow = Slow()
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))

    def factory(name: str, s: Settings, run_id: str) -> Connector:
        return slow if name == "jsonl" else build_connector(name, s, run_id)

    run = asyncio.create_task(execute(settings, deliver=True, connector_factory=factory))
    await asyncio.wait_for(slow.started.wait(), 10)
    run.cancel()  # what asyncio.run does with the main task on Ctrl-C
    with pytest.raises(asyncio.CancelledError):
        await run
    await asyncio.sleep(0.7)  # long enough for a stray batch to hit the closed client
    gc.collect()
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    assert unretrieved == []
