"""Progress for reading, planning and sending, with totals known before each phase; none beside JSON logs."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from accoil_sync import cli_run
from accoil_sync.config.settings import Settings
from accoil_sync.sync.runner import execute
from accoil_sync.traits.names import ObjectKind
from tests.conftest import WriteConfig, write


class Bar:
    def __init__(self, total: int | None) -> None:
        self.total = total
        self.done = 0

    def advance(self, n: int) -> None:
        self.done += n

    def add_total(self, n: int) -> None:
        self.total = (self.total or 0) + n


class Recorder:
    def __init__(self) -> None:
        self.bars: dict[str, Bar] = {}

    def task(self, description: str, total: int | None) -> Bar:
        self.bars[description] = Bar(total)
        return self.bars[description]

    def seen(self) -> dict[str, tuple[int | None, int]]:
        return {name: (bar.total, bar.done) for name, bar in self.bars.items()}


@pytest.fixture
def settings(make_settings: WriteConfig, tmp_path: Path) -> Settings:
    write(tmp_path / "users.csv", "user_id,score\n" + "".join(f"u{i},{i % 100}\n" for i in range(250)))
    write(tmp_path / "accounts.csv", "account_id,score\na1,1\na2,2\n")
    return make_settings(accounts="accounts.csv")


def test_every_phase_has_a_total_known_before_it_and_reaches_it(settings: Settings) -> None:
    first = Recorder()
    asyncio.run(execute(settings, deliver=True, progress=first))
    assert first.seen() == {
        "reading users": (250, 250),
        "reading accounts": (2, 2),
        "jsonl: sending": (252, 252),
        "jsonl: planning": (252, 252),
    }
    write("users.csv", "user_id,score\n" + "".join(f"u{i},{i % 100 + (i < 10)}\n" for i in range(250)))
    second = Recorder()
    asyncio.run(execute(settings, deliver=True, progress=second))
    assert second.seen()["jsonl: planning"] == (10, 10)  # only what changed is planned and sent
    assert second.seen()["jsonl: sending"] == (10, 10)
    dry = Recorder()
    asyncio.run(execute(settings, deliver=False, progress=dry))
    assert "jsonl: sending" not in dry.seen() and dry.seen()["jsonl: planning"] == (0, 0)


def test_bars_only_on_a_terminal_and_never_with_json_logs(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert cli_run.progress_bars("human", settings) is not None
    assert cli_run.progress_bars("json", settings) is None
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert cli_run.progress_bars("human", settings) is None


def test_removals_are_counted_in_the_planning_total(make_settings: WriteConfig, tmp_path: Path) -> None:
    """With ``removal = "clear"`` the planning total counts the objects to clear too (its query joins the
    held objects the removal condition refers to)."""
    write(tmp_path / "users.csv", "user_id,score\n" + "".join(f"u{i},{i}\n" for i in range(20)))
    settings = make_settings(extra='removal = "clear"\n')  # appended to the [destinations.jsonl] section
    asyncio.run(execute(settings, deliver=True))
    write(tmp_path / "users.csv", "user_id,score\n" + "".join(f"u{i},{i}\n" for i in range(18)))
    bars = Recorder()
    result = asyncio.run(execute(settings, deliver=True, progress=bars))
    assert result.plans["jsonl"].counts[ObjectKind.USER].clear == 2
    assert bars.seen()["jsonl: planning"] == (2, 2)
