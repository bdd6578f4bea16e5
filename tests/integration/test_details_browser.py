"""The details page in a real headless browser (Debian's chromium): it loads, and the score chart lays out
one point per recorded score. ``make test`` installs chromium and sets ACCOIL_SYNC_REQUIRE_BROWSER=1, so
there the test cannot skip itself away."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from accoil_sync.card.signature import link_token
from accoil_sync.serve.app import create_app
from accoil_sync.serve.threaded import ThreadedServer
from accoil_sync.sync.runner import execute
from tests.integration.conftest import CARD_SECRET

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser() -> str:
    if BROWSER is None:
        if os.environ.get("ACCOIL_SYNC_REQUIRE_BROWSER"):
            pytest.fail("chromium is required here (make test installs Debian's chromium package)")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    return BROWSER


def dump_dom(browser: str, url: str, profile: Path) -> str:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
    ]
    done = subprocess.run([browser, *flags, url], capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def rescore(users_csv: Path, score: int, segments: str) -> None:
    lines = users_csv.read_text().splitlines()
    header = lines[0].split(",")
    for i, line in enumerate(lines):
        cells = line.split(",")
        if cells[0] == "u_001":
            cells[header.index("score")] = str(score)
            cells[header.index("segments")] = segments
            lines[i] = ",".join(cells)
    users_csv.write_text("\n".join(lines) + "\n")


def test_details_page_renders_the_score_history_in_chromium(
    browser: str, card_settings: Any, examples: Path, tmp_path: Path
) -> None:
    for score, segments in ((60, "At Risk"), (75, "Engaged")):
        rescore(examples / "users.csv", score, segments)
        asyncio.run(execute(card_settings, deliver=True, destinations=["card"]))
    settings = card_settings.model_copy(
        update={"serve": card_settings.serve.model_copy(update={"public_url": None})}
    )
    expires = int(time.time()) + 600
    sig = link_token(CARD_SECRET, "user", "u_001", expires)
    with ThreadedServer(create_app(settings)) as url:
        dom = dump_dom(browser, f"{url}/card/details/user/u_001?exp={expires}&sig={sig}", tmp_path / "chrome")
    assert "<h1>ada@acme.io</h1>" in dom or "<h1>u_001</h1>" in dom
    assert 'data-points="3"' in dom  # what the server drew
    assert 'data-rendered-points="3"' in dom  # what the browser laid out with a non-zero box
    for joined_or_left in (">joined</td><td>Engaged<", ">left</td><td>At Risk<", ">joined</td><td>At Risk<"):
        assert joined_or_left in dom
