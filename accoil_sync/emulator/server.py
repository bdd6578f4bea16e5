"""Run the emulator on loopback: in a background thread (tests, demo, benchmarks) or in the foreground."""

from __future__ import annotations

import gc

import uvicorn

from accoil_sync.emulator.app import Emulator
from accoil_sync.serve.threaded import ThreadedServer


class EmulatorServer(ThreadedServer):
    """``with EmulatorServer(Emulator()) as url:``; the emulator's holdings are saved on stop (``--persist``)."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(emulator.app(), host, port, name="accoil-emulator")
        self.emulator = emulator

    def stop(self) -> None:
        super().stop()
        self.emulator.save()


def serve_forever(emulator: Emulator, host: str, port: int) -> None:
    # The emulator keeps every accepted message in memory (up to 200,000 per vendor), a heap the cyclic
    # collector would walk again every 700 allocations: at the default threshold that was about a third of
    # its CPU per 100,000 Segment messages, CPU the client being measured shares on the same machine.
    gc.set_threshold(100_000, *gc.get_threshold()[1:])
    try:
        uvicorn.run(emulator.app(), host=host, port=port, log_level="info", lifespan="off")
    finally:
        emulator.save()  # no-op without --persist
