"""Shared fixtures. Every test runs in its own working directory with no ACCOIL_SYNC_* variables set."""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from accoil_sync.config.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("ACCOIL_SYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    target = tmp_path / "examples"
    shutil.copytree(EXAMPLES, target)
    return target


WriteConfig = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path) -> WriteConfig:
    """Write a TOML config in the test directory and load it; ``extra`` is appended verbatim."""

    def make(users: str | None = "users.csv", accounts: str | None = None, extra: str = "") -> Settings:
        lines = ["[source]"]
        if users:
            lines.append(f'users = "{users}"')
        if accounts:
            lines.append(f'accounts = "{accounts}"')
        lines += [
            "[state]",
            'path = "state/state.db"',
            "[destinations.jsonl]",
            "enabled = true",
            'path = "out/deliveries.jsonl"',
        ]
        path = tmp_path / "accoil-sync.toml"
        path.write_text("\n".join(lines) + "\n" + textwrap.dedent(extra))
        return load_settings(path)

    return make


def write(path: Path | str, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def start_serve(*args: str, env: dict[str, str]) -> tuple[Any, str]:
    """``accoil-sync serve <args>`` on a free port in a subprocess; returns (process, base URL) once
    ``/healthz`` answers. The caller stops it (SIGTERM) and reads its output."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "accoil_sync", "serve", *args, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            return proc, base
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"serve did not start: {proc.communicate()[1][-2000:]}") from None
            time.sleep(0.05)


def failure_reasons(settings: Any, destination: str) -> list[str]:
    """The reason texts of the records failing now at a destination. Run reports carry reason classes only
    (texts can hold emails); the texts stay in the state store, where `accoil-sync failures` reads them."""
    from accoil_sync.sync.state import StateStore

    store = StateStore(settings.state.path)
    try:
        return [f.reason for f in store.failures(destination=destination)]
    finally:
        store.close()
