"""Every emulator fault profile, and scripted faults aimed at each phase of a run (schema setup, delivery,
the commit after a write), end without a traceback: a fault the retry policy cannot outlast stops that
destination (exit 3, a one-line reason) and the other destinations still run.

Time is compressed: retry waits and 429 pauses are capped at 50 ms (HubSpot and Intercom ask for up to a
10-second window), so the matrix stays a few seconds; what is asserted is the outcome, not the timing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.connectors import Connector, build_connector
from accoil_sync.connectors.base import Change, Outcome, SourceView, UsesSourceView
from accoil_sync.emulator import PROFILES, Emulator, EmulatorServer, Faults
from accoil_sync.sync.runner import RunResult, execute
from accoil_sync.traits.names import ObjectKind
from tests.conftest import WriteConfig
from tests.integration.conftest import destination_section

VENDORS = ("segment", "intercom", "hubspot")
SECRETS = {
    "ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY": "wk_test_key",
    "ACCOIL_SYNC_DESTINATIONS__INTERCOM__ACCESS_TOKEN": "tok-test",
    "ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN": "pat-test",
}
FAST = 0.05


class Phased:
    """A real connector whose vendor is handed ``faults`` when the run reaches ``phase``."""

    def __init__(self, inner: Connector, arm: Callable[[str], None]) -> None:
        self.inner = inner
        self.arm = arm
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.encoder = inner.encoder

    async def ensure_schema(self) -> None:
        self.arm("setup")
        await self.inner.ensure_schema()

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        self.arm("delivery")
        return await self.inner.deliver(kind, batch)

    def bind_source(self, view: SourceView) -> None:
        if isinstance(self.inner, UsesSourceView):  # Segment's member group calls read the stage
            self.inner.bind_source(view)

    async def aclose(self) -> None:
        await self.inner.aclose()


def compressed(connector: Connector) -> Connector:
    transport = getattr(connector, "transport", None)
    if transport is not None:
        wait, pause = transport._wait, transport.limiter.pause
        transport._wait = lambda state: min(wait(state), FAST)
        transport.limiter.pause = lambda seconds: pause(min(seconds, FAST))
        transport.limiter.period = min(transport.limiter.period, FAST)  # a "full window" ends at once
    return connector


@pytest.fixture
def world(
    examples: Path, make_settings: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], tuple[Emulator, Settings]]]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    servers: list[EmulatorServer] = []

    def make(profile: str) -> tuple[Emulator, Settings]:
        emulator = Emulator(profile, seed=16, intercom_search_lag=0)
        server = EmulatorServer(emulator)
        servers.append(server)
        url = server.__enter__()
        extra = "".join(
            destination_section(url, v, max_attempts=3, timeout_seconds=0.5)
            + ("create_missing = true\n" if v == "hubspot" else "")
            + ("create_missing_contacts = true\n" if v == "intercom" else "")
            for v in VENDORS
        )
        return emulator, make_settings("examples/users.csv", "examples/accounts.csv", extra)

    yield make
    for server in servers:
        server.__exit__(None, None, None)


def run(settings: Settings, factory: Callable[[str, Settings, str], Connector] | None = None) -> RunResult:
    def default(name: str, s: Settings, run_id: str) -> Connector:
        return compressed(build_connector(name, s, run_id))

    return asyncio.run(
        execute(
            settings, deliver=True, destinations=[*VENDORS, "jsonl"], connector_factory=factory or default
        )
    )


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    crashed = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not crashed, crashed[0].getMessage()


def settled(emulator: Emulator, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """With the faults gone, the next run completes: nothing was lost to the faults."""
    for vendor in emulator.vendors.values():
        vendor.faults = Faults()
    again = run(settings)
    assert again.exit_code == 4 and again.source.invalid == 3, (
        again.to_json()
    )  # delivered; the example's bad rows
    assert all(not d.stopped and not d.failed for d in again.deliveries.values()), again.to_json()
    assert len(emulator.hubspot.state()["contacts"]) == 7
    assert len(emulator.intercom.contacts) == 7
    assert set(emulator.segment.state()["users"]) == {f"u_{n:03d}" for n in range(1, 8)}
    no_traceback(caplog)


@pytest.mark.parametrize("profile", [p for p in PROFILES if p not in ("clean", "unlimited")])
def test_every_fault_profile_ends_without_a_traceback(
    world: Callable[[str], tuple[Emulator, Settings]], caplog: pytest.LogCaptureFixture, profile: str
) -> None:
    emulator, settings = world(profile)
    result = run(settings)  # faults at random over every phase, setup included
    assert result.exit_code in (1, 3, 4), result.to_json()  # 4: delivered, with the bad rows
    assert result.deliveries["jsonl"].counts == {"ok": 11}, result.to_json()  # the others still run
    no_traceback(caplog)
    settled(emulator, settings, caplog)


SCRIPTS: dict[str, Faults] = {
    "5xx": Faults(fail_next=[503] * 3),
    "429": Faults(fail_next=[429] * 3),
    "timeout": Faults(slow_rate=1.0, slow_seconds=0.8),
    "dropped": Faults(fail_next=[0] * 3),
    "revoked": Faults(revoked=True),
}


def _cases() -> list[tuple[str, str, str]]:
    """Every fault at every phase, the vendor taking turns (Segment has no setup phase)."""
    cases = []
    for i, fault in enumerate(SCRIPTS):
        for j, phase in enumerate(("setup", "delivery", "commit")):
            vendors = VENDORS[1:] if phase == "setup" else VENDORS
            cases.append((fault, phase, vendors[(i + j) % len(vendors)]))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "phase", "vendor"), _cases())
def test_a_fault_at_each_phase_stops_at_most_that_destination(
    world: Callable[[str], tuple[Emulator, Settings]],
    caplog: pytest.LogCaptureFixture,
    vendor: str,
    phase: str,
    fault: str,
) -> None:
    """``commit``: the vendor performs the write and the answer is lost, or a later batch fails after
    earlier ones were acknowledged and committed: either way nothing is committed that was not acked."""
    emulator, settings = world("clean")
    caplog.set_level(logging.INFO)
    armed = False

    def arm(now: str) -> None:
        nonlocal armed
        wanted = "delivery" if phase == "commit" else phase
        if armed or now != wanted:
            return
        armed = True
        script = SCRIPTS[fault]
        ahead = [-1] if phase == "commit" and script.fail_next else []  # the first write goes through
        emulator.vendors[vendor].faults = replace(script, fail_next=[*ahead, *script.fail_next])

    def factory(name: str, s: Settings, run_id: str) -> Connector:
        connector = compressed(build_connector(name, s, run_id))
        return Phased(connector, arm) if name == vendor else connector  # type: ignore[return-value]

    result = run(settings, factory)
    assert armed
    report = result.deliveries[vendor]
    assert result.exit_code in (1, 3, 4), result.to_json()  # 4: delivered, with the bad rows
    if fault in ("5xx", "timeout", "revoked") and phase == "setup":
        assert result.exit_code == 3 and report.stopped, result.to_json()
        assert "\n" not in report.stopped and len(report.stopped) < 1000
    for other in (*VENDORS, "jsonl"):
        if other != vendor:  # the others ran and delivered everything
            assert not result.deliveries[other].stopped and result.deliveries[other].counts.get("ok"), other
    no_traceback(caplog)
    settled(emulator, settings, caplog)


def test_the_cli_reports_a_failed_setup_in_one_line_and_exits_3(
    world: Callable[[str], tuple[Emulator, Settings]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from accoil_sync.cli import app

    emulator, settings = world("clean")
    emulator.hubspot.faults = Faults(fail_next=[503] * 3)  # the schema's first request, and its retries
    monkeypatch.chdir(settings.state.path.parent.parent)
    done = CliRunner().invoke(app, ["sync", "-c", "accoil-sync.toml", "--log-format", "text"])
    output = done.output + (done.stderr if done.stderr_bytes else "")
    assert done.exit_code == 3, output
    assert "hubspot stopped before sending: schema setup failed: hubspot answered 503" in output
    assert "Traceback" not in output
    assert len(emulator.segment.state()["users"]) == 7  # the destinations before and after it ran
    assert len(emulator.intercom.contacts) == 7
