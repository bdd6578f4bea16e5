"""Run the emulator on loopback: in a background thread (tests, demo, benchmarks) or in the foreground."""

from __future__ import annotations

import threading
import time

import uvicorn

from accoil_sync.emulator.app import Emulator


class EmulatorServer:
    """``with EmulatorServer(Emulator()) as url:`` gives ``http://127.0.0.1:<port>`` while the block runs."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        config = uvicorn.Config(
            emulator.app(), host=host, port=port, log_level="warning", lifespan="off", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="accoil-emulator", daemon=True)
        self.url = ""

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the emulator did not start")
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.emulator.save()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def serve_forever(emulator: Emulator, host: str, port: int) -> None:
    try:
        uvicorn.run(emulator.app(), host=host, port=port, log_level="info", lifespan="off")
    finally:
        emulator.save()  # no-op without --persist
