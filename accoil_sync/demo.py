"""``make demo`` / ``accoil-sync demo``: the shipped example, planned and synced twice.

The first sync delivers every valid object; the second must send nothing -- that is the product's
promise in one screen. The demo state lives in ``.accoil-sync/demo`` and is reset each time.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

from rich.console import Console

from accoil_sync import logs
from accoil_sync.config.settings import load_settings
from accoil_sync.sync.runner import RunResult, execute
from accoil_sync.traits.names import ObjectKind

EXAMPLE_CONFIG = Path("examples/accoil-sync.toml")


def _writes(result: RunResult) -> int:
    return sum(plan.writes for plan in result.plans.values())


def run_demo(config: Path = EXAMPLE_CONFIG, console: Console | None = None) -> int:
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    settings = load_settings(config)
    logs.setup("WARNING", "human")
    shutil.rmtree(settings.state.directory, ignore_errors=True)
    console.rule("1. plan (dry run)")
    planned = asyncio.run(execute(settings, deliver=False))
    src = planned.source.by_kind
    console.print(
        f"source: {src[ObjectKind.USER].rows} user rows, {src[ObjectKind.ACCOUNT].rows} account rows; "
        f"{planned.source.invalid} invalid row(s) reported and kept out:"
    )
    for error in planned.errors:
        console.print(f"  {error}", markup=False, highlight=False)
    console.print(f"planned writes: {_writes(planned)}")
    console.rule("2. sync")
    first = asyncio.run(execute(settings, deliver=True))
    for name, report in first.deliveries.items():
        console.print(f"{name}: {dict(report.counts)}")
    jsonl = settings.destinations.jsonl.path
    with jsonl.open(encoding="utf-8") as fh:
        lines = sum(1 for _ in fh)
    console.print(
        f"deliveries written to {jsonl} ({lines} lines); "
        f"sync log under {settings.state.directory / 'synclog'}"
    )
    console.rule("3. sync again (nothing changed)")
    second = asyncio.run(execute(settings, deliver=True))
    changes = _writes(second)
    console.print(f"changes on the second run: {changes}")
    console.rule("next")
    console.print(
        "Point accoil-sync at your own metrics and destinations: copy examples/accoil-sync.toml to "
        "accoil-sync.toml, set [source] users/accounts, enable a destination and export its secret, e.g.\n"
        "  export ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN=...\n"
        "then run `accoil-sync config check` and `accoil-sync plan`.",
        markup=False,
    )
    if changes:
        console.print("[red]the second run planned writes: this is a bug[/red]")
        return 1
    return 0


def main() -> None:
    raise SystemExit(run_demo())


if __name__ == "__main__":
    main()
