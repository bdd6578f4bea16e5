"""An ASGI app on a loopback port in a background thread: for tests, the demo and benchmarks."""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import uvicorn


class ThreadedServer:
    """``with ThreadedServer(app) as url:`` gives ``http://127.0.0.1:<port>`` while the block runs."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        lifespan: Literal["on", "off"] = "off",
        name: str = "accoil-asgi",
    ) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan=lifespan, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)
        self.url = ""

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
