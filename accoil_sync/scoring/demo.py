"""The events part of ``make demo``: a small generated stream scored, synced, explained and synced again."""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from accoil_sync.config.settings import load_settings
from accoil_sync.emulator import Emulator
from accoil_sync.scoring import Scorer
from accoil_sync.scoring.generate import StreamSpec, write_stream
from accoil_sync.sync.runner import execute

EVENTS_CONFIG = Path("examples/events.toml")
DEMO_EVENTS = Path(".accoil-sync/demo-events")


def run_events_demo(console: Console, emulator: Emulator, config: Path = EVENTS_CONFIG) -> int:
    """Exit status: 0 when the second run sent nothing."""
    from accoil_sync.demo import _writes, _writes_sent

    # Like the metrics demo, this keeps its stream and state in its own directory whatever the config
    # says, and resets them each time: the example's own state is never touched.
    home = DEMO_EVENTS.resolve()
    shutil.rmtree(home, ignore_errors=True)
    os.environ["ACCOIL_SYNC_STATE__PATH"] = str(home / "state.db")
    os.environ["ACCOIL_SYNC_DESTINATIONS__JSONL__PATH"] = str(home / "deliveries.jsonl")
    os.environ["ACCOIL_SYNC_SOURCE__EVENTS"] = str(home / "events" / "*.parquet")
    settings = load_settings(config)
    spec = StreamSpec(users=300, days=45, end=datetime.now(UTC).date(), seed=7, with_email=True)
    total = write_stream(spec, home / "events")
    console.print(
        f"generated {total:,} events ({spec.users} users, {spec.start}..{spec.end}) in "
        f"{settings.state.directory / 'events'}; config {config}",
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
