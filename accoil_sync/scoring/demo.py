"""The events part of ``make demo``: a small generated stream scored, synced, explained and synced again."""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from accoil_sync.config.settings import load_settings
from accoil_sync.emulator import Emulator
from accoil_sync.scoring import Scorer
from accoil_sync.scoring.generate import StreamSpec, write_accounts, write_stream
from accoil_sync.sync.runner import execute

EVENTS_CONFIG = Path("examples/events.toml")


DEMO_DIR = Path(".accoil-sync/demo-events")


def run_events_demo(console: Console, emulator: Emulator, config: Path = EVENTS_CONFIG) -> int:
    """Exit status: 0 when the second run sent nothing.

    Like the files part, it keeps its files under the working directory's .accoil-sync (through the
    environment, which overrides the config), so the examples directory is left alone; the files part's
    own overrides are put back afterwards."""
    base = DEMO_DIR.resolve()
    overrides = {
        "ACCOIL_SYNC_STATE__PATH": str(base / "state.db"),
        "ACCOIL_SYNC_DESTINATIONS__JSONL__PATH": str(base / "deliveries.jsonl"),
        "ACCOIL_SYNC_SOURCE__EVENTS": str(base / "events" / "*.parquet"),
        "ACCOIL_SYNC_SOURCE__ACCOUNTS": str(base / "accounts.csv"),
    }
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        return _run(console, emulator, config)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run(console: Console, emulator: Emulator, config: Path) -> int:
    from accoil_sync.demo import _writes, _writes_sent

    settings = load_settings(config)
    shutil.rmtree(settings.state.directory, ignore_errors=True)
    # The stream ends yesterday: a generated day spreads its events over 24 hours, and today's would lie
    # partly in the future (which the sanity checks rightly warn about).
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    spec = StreamSpec(users=300, days=45, end=yesterday, seed=7, with_email=True)
    total = write_stream(spec, settings.state.directory / "events")
    accounts = write_accounts(spec, settings.state.directory / "accounts.csv")
    console.print(
        f"generated {total:,} events ({spec.users} users, {spec.start}..{spec.end}) in "
        f"{settings.state.directory / 'events'}, and the name and domain of its {accounts} accounts "
        f"(source.accounts: HubSpot matches companies by domain); config {config}",
        markup=False,
    )
    first = asyncio.run(execute(settings, deliver=True))
    for name, report in first.deliveries.items():
        console.print(f"{name}: {dict(report.counts)}")
    with Scorer(settings.source, settings.profiles, settings.state.directory) as scorer:
        scorer.run()
        top = scorer.con.sql(
            "SELECT user_id, score, segments, frequency, activation FROM score_users "
            "ORDER BY score DESC, user_id LIMIT 5"
        ).fetchall()
        table = Table(title="Computed from events (top users)")
        for col in ("user", "score", "segments", "frequency", "activation"):
            table.add_column(col)
        for key, score, segments, frequency, activation in top:
            table.add_row(key, str(score), ", ".join(segments), str(frequency), f"{activation:g}%")
        console.print(table)
        middle = scorer.con.sql(
            "SELECT user_id FROM score_users WHERE score BETWEEN 30 AND 70 ORDER BY user_id LIMIT 1"
        ).fetchall()
        for explanation in scorer.explain(middle[0][0] if middle else top[0][0]):
            console.print("\n".join(explanation.lines()), markup=False, highlight=False)
    before = emulator.state()
    second = asyncio.run(execute(settings, deliver=True))
    writes = _writes_sent(before, emulator.state())
    console.print(
        f"events unchanged, second run: changes {_writes(second)}; writes sent to the vendors: {writes}"
    )
    return 1 if _writes(second) or writes else 0
