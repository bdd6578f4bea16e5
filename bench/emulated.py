"""Helpers for benchmarks that run against the emulator in its own process (so it does not share a core
and the GIL with the client being measured)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def emulator_process(profile: str = "unlimited", *extra: str) -> Iterator[str]:
    port = free_port()
    args = ["-m", "accoil_sync", "emulate", "--port", str(port), "--profile", profile, *extra]
    with server_process(args, port) as url:
        yield url


@contextmanager
def server_process(args: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[str]:
    """``python <args>`` serving on ``port``; yields its URL once ``/healthz`` answers."""
    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{args} did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_emulator/state", timeout=60) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/_emulator/reset", method="POST"), timeout=10).read()
