"""``make demo`` / ``accoil-sync demo``: the shipped example, end to end, against the local emulator.

It starts the Segment/Intercom/HubSpot look-alikes in-process, points every destination whose connector
exists at them, plans, syncs, shows what each "vendor" now holds, syncs again (nothing may be sent) and
says how to switch to real accounts. Demo state lives in ``.accoil-sync/demo`` (whatever the config says)
and is reset each time; the example configuration's own state is never touched.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from accoil_sync import logs
from accoil_sync.config.settings import load_settings
from accoil_sync.connectors import AVAILABLE
from accoil_sync.emulator import Emulator, EmulatorServer
from accoil_sync.sync.runner import RunResult, execute
from accoil_sync.traits.names import ObjectKind

EXAMPLE_CONFIG = Path("examples/accoil-sync.toml")
DEMO_STATE = Path(".accoil-sync/demo/state.db")
DEMO_SECRETS = {
    "segment": ("WRITE_KEY", "demo-write-key"),
    "intercom": ("ACCESS_TOKEN", "demo-intercom-token"),
    "hubspot": ("ACCESS_TOKEN", "demo-hubspot-token"),
}
# The demo creates what the example names; a real account's default is to update existing records only.
DEMO_SETTINGS = {"intercom": {"CREATE_MISSING_CONTACTS": "true"}, "hubspot": {"CREATE_MISSING": "true"}}


def _writes(result: RunResult) -> int:
    return sum(plan.writes for plan in result.plans.values())


READS = ("get", "list", "read", "search")


def _writes_sent(before: dict[str, Any], after: dict[str, Any]) -> int:
    """Requests that could change a vendor's data (HubSpot's per-run schema check only reads)."""
    total = 0
    for vendor, state in after.items():
        old = before[vendor]["requests"]["by_endpoint"]
        for endpoint, count in state["requests"]["by_endpoint"].items():
            if not any(word in endpoint.split(" ")[0] for word in READS):
                total += count - old.get(endpoint, 0)
    return total


def _point_at_emulator(url: str) -> list[str]:
    """Enable every vendor connector this version has, aimed at the emulator, through the environment --
    exactly how a user would point them at the real hosts."""
    enabled = []
    for name in AVAILABLE:
        if name in DEMO_SECRETS:
            secret, value = DEMO_SECRETS[name]
            prefix = f"ACCOIL_SYNC_DESTINATIONS__{name.upper()}__"
            os.environ[prefix + "ENABLED"] = "true"
            os.environ[prefix + "BASE_URL"] = f"{url}/{name}"
            os.environ[prefix + secret] = value
            for key, setting in DEMO_SETTINGS.get(name, {}).items():
                os.environ[prefix + key] = setting
            enabled.append(name)
    return enabled


def _holdings(emulator: Emulator) -> Table:
    state: dict[str, Any] = emulator.state()
    table = Table(title="What each emulated vendor now holds")
    for col in ("vendor", "users/contacts", "accounts/companies", "requests", "example"):
        table.add_column(col)
    seg = state["segment"]
    example = next(iter(seg["users"].items()), None)
    table.add_row(
        "segment",
        str(len(seg["users"])),
        str(len(seg["groups"])),
        str(seg["requests"]["total"]),
        f"{example[0]}: {example[1].get('Accoil_Default_Score')!r} score" if example else "-",
    )
    intercom = state["intercom"]
    contact = next(iter(intercom["contacts"].items()), None)
    table.add_row(
        "intercom",
        str(len(intercom["contacts"])),
        str(len(intercom["companies"])),
        str(intercom["requests"]["total"]),
        f"{contact[0]}: tags {', '.join(contact[1]['tags'])}" if contact else "-",
    )
    hubspot = state["hubspot"]
    company = next(iter(hubspot["companies"].values()), None)
    table.add_row(
        "hubspot",
        str(len(hubspot["contacts"])),
        str(len(hubspot["companies"])),
        str(hubspot["requests"]["total"]),
        f"{company.get('accoil_account_id')}: accoil_default_score {company.get('accoil_default_score')}"
        if company
        else "-",
    )
    return table


def run_demo(config: Path = EXAMPLE_CONFIG, console: Console | None = None) -> int:
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    logs.setup("WARNING", "human")
    emulator = Emulator("clean")
    with EmulatorServer(emulator) as url:
        vendors = _point_at_emulator(url)
        os.environ["ACCOIL_SYNC_STATE__PATH"] = str(DEMO_STATE.resolve())
        os.environ["ACCOIL_SYNC_DESTINATIONS__JSONL__PATH"] = str(
            DEMO_STATE.resolve().parent / "deliveries.jsonl"
        )
        settings = load_settings(config)
        shutil.rmtree(settings.state.directory, ignore_errors=True)
        console.print(f"emulator on {url}; destinations: jsonl, {', '.join(vendors)}")
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
        console.print(_holdings(emulator))
        console.rule("3. sync again (nothing changed)")
        before = emulator.state()
        second = asyncio.run(execute(settings, deliver=True))
        after = emulator.state()
        changes = _writes(second)
        writes = _writes_sent(before, after)
        console.print(f"changes on the second run: {changes}; writes sent to the vendors: {writes}")
        console.rule("4. metrics computed from raw events (examples/events.toml, docs/SCORING.md)")
        from accoil_sync.scoring.demo import run_events_demo

        events_failed = run_events_demo(console, emulator, config.parent / "events.toml")
    console.rule("next")
    console.print(
        "accoil-sync is installed in .venv: `. .venv/bin/activate` puts it on your PATH, then\n"
        "  accoil-sync sync -c examples/accoil-sync.toml     # the example, into its own state\n"
        "  accoil-sync status -c examples/accoil-sync.toml\n"
        "For your own metrics and real accounts: copy examples/accoil-sync.toml next to your data, point "
        "[source] users/accounts at it (paths are relative to the config file), enable a destination and "
        "export its secret, e.g. export ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY=... "
        "(README.md walks through each vendor).\n"
        "Only have raw events? examples/events.toml scores them (`accoil-sync score`, docs/SCORING.md).",
        markup=False,
    )
    if changes or writes or events_failed:
        console.print("[red]the second run sent something: this is a bug[/red]")
        return 1
    return 0


def main() -> None:
    raise SystemExit(run_demo())


if __name__ == "__main__":
    main()
