"""Every delivering run holds the state store's sync lease: a second run is refused with a clear message
(or waits, with ``state.on_busy = "wait"``), and a live run is never marked interrupted by another."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.connectors import Capabilities, Change, Connector, Outcome
from accoil_sync.errors import EXIT_BUSY, SyncBusy
from accoil_sync.sync.lease import Lease
from accoil_sync.sync.runner import RunResult, execute
from accoil_sync.sync.state import StateStore
from accoil_sync.traits import ObjectKind, TraitsEncoder
from tests.conftest import WriteConfig, write
from tests.unit.test_cli import cli

USERS = "user_id,score\n" + "".join(f"u{i},{i}\n" for i in range(1, 9))


class Slow:
    """Takes ``delay`` seconds per batch of two; records what it was sent."""

    name = "jsonl"

    def __init__(self, delay: float = 0.05) -> None:
        self.capabilities = Capabilities(max_batch=2, max_concurrency=1)
        self.encoder = TraitsEncoder()
        self.delay = delay
        self.sent: list[str] = []
        self.started = asyncio.Event()

    async def ensure_schema(self) -> None:
        return None

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        self.started.set()
        await asyncio.sleep(self.delay)
        self.sent += [c.key for c in batch]
        return [Outcome.ok(c.key) for c in batch]

    async def aclose(self) -> None:
        return None


def factory(connector: Slow) -> object:
    def make(name: str, settings: Settings, run_id: str) -> Connector:
        return connector

    return make


async def sync(settings: Settings, connector: Slow, **kw: object) -> RunResult:
    return await execute(settings, deliver=True, connector_factory=factory(connector), **kw)  # type: ignore[arg-type]


@pytest.fixture
def settings(make_settings: WriteConfig, tmp_path: Path) -> Settings:
    write(tmp_path / "users.csv", USERS)
    return make_settings()


def test_a_second_sync_on_the_same_store_is_refused_and_sends_nothing(settings: Settings) -> None:
    first, second = Slow(delay=0.1), Slow()

    async def both() -> tuple[RunResult, BaseException | RunResult]:
        one = asyncio.create_task(sync(settings, first))
        await first.started.wait()
        other = await asyncio.gather(sync(settings, second), return_exceptions=True)
        return await one, other[0]

    done, refused = asyncio.run(both())
    assert sorted(first.sent) == [f"u{i}" for i in range(1, 9)] and done.exit_code == 0
    assert second.sent == []
    assert isinstance(refused, SyncBusy) and refused.exit_code == EXIT_BUSY
    message = str(refused)
    assert "another sync is running" in message and str(settings.state.path) in message
    assert "run " in message and 'state.on_busy = "wait"' in message
    store = StateStore(settings.state.path)
    assert [r.status for r in store.runs()] == ["ok"]  # the refused run left no ledger row, marked nothing
    store.close()


def test_with_on_busy_wait_the_second_run_queues_and_finds_nothing_left_to_send(
    make_settings: WriteConfig, tmp_path: Path
) -> None:
    write(tmp_path / "users.csv", USERS)
    settings = make_settings()
    settings = settings.model_copy(
        update={"state": settings.state.model_copy(update={"on_busy": "wait", "wait_seconds": 30})}
    )
    first, second = Slow(delay=0.1), Slow()

    async def both() -> list[RunResult]:
        one = asyncio.create_task(sync(settings, first))
        await first.started.wait()
        return [await one, await sync(settings, second)]

    started = time.monotonic()
    a, b = asyncio.run(both())
    assert len(first.sent) == 8 and second.sent == []  # nothing sent twice
    assert a.exit_code == b.exit_code == 0
    assert time.monotonic() - started < 20
    store = StateStore(settings.state.path)
    assert [r.status for r in store.runs()] == ["ok", "ok"]
    store.close()


def test_a_live_run_is_not_marked_interrupted_but_a_dead_ones_is(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    alive = Lease(store, "host:1:alive", ttl=0.3)
    assert alive.acquire()
    store.start_run("r1", "sync")
    assert store.mark_interrupted("host:2:other") == 0  # its holder renews the lease: it is running
    assert [r.status for r in store.runs()] == ["running"]
    time.sleep(0.35)  # the holder died: the lease expired
    assert store.mark_interrupted("host:2:other") == 1
    assert [r.status for r in store.runs()] == ["interrupted"]
    store.close()


def test_the_cli_refuses_a_sync_while_another_process_holds_the_lease(settings: Settings) -> None:
    store = StateStore(settings.state.path)
    other = Lease(store, "cron-pod:7", ttl=60)
    assert other.acquire()
    store.start_run("20260101T000000-000001", "sync")
    result = cli("sync", "-c", "accoil-sync.toml")
    assert result.returncode == EXIT_BUSY, result.stderr
    assert "cron-pod:7" in result.stderr and "20260101T000000-000001" in result.stderr
    assert "Traceback" not in result.stderr
    assert not Path("out/deliveries.jsonl").exists()
    status = json.loads(cli("status", "-c", "accoil-sync.toml", "--json").stdout)
    assert status["running"].startswith("cron-pod:7, run 20260101T000000-000001")
    other.release()
    assert cli("sync", "-c", "accoil-sync.toml", "--json").returncode == 0
    lines = Path("out/deliveries.jsonl").read_text().splitlines()
    assert len(lines) == 8 and {json.loads(line)["key"] for line in lines} == {f"u{i}" for i in range(1, 9)}
    store.close()


def test_the_lease_of_a_killed_process_on_this_host_is_taken_at_once(settings: Settings) -> None:
    import os
    import socket
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid now names no process
    store = StateStore(settings.state.path)
    assert Lease(store, f"{socket.gethostname()}:{gone.pid}:dead", ttl=600).acquire()
    started = time.monotonic()
    first = Slow(delay=0)
    assert asyncio.run(sync(settings, first)).exit_code == 0 and len(first.sent) == 8
    assert time.monotonic() - started < 10  # not the 600 s the dead holder had left

    # a live holder on this host (the test runner's parent) keeps it, and so does one on another host
    for live in (f"{socket.gethostname()}:{os.getppid()}:alive", f"other-host:{gone.pid}:x"):
        store.db.execute("DELETE FROM leases")
        assert Lease(store, live, ttl=600).acquire()
        with pytest.raises(SyncBusy):
            asyncio.run(sync(settings, Slow(delay=0)))
    store.close()


async def test_a_manual_sync_beside_a_scheduled_run_is_refused(settings: Settings) -> None:
    from accoil_sync.serve.scheduler import Scheduler, Started

    scheduled = Slow(delay=0.1)
    scheduler = Scheduler(settings, connector_factory=factory(scheduled))  # type: ignore[arg-type]
    assert isinstance(scheduler.trigger("schedule"), Started)
    await scheduled.started.wait()
    manual = Slow(delay=0)
    with pytest.raises(SyncBusy) as refused:
        await sync(settings, manual)
    assert manual.sent == [] and "another sync is running" in str(refused.value)
    assert scheduler.current is not None
    await scheduler.current
    assert len(scheduled.sent) == 8 and scheduler.last["status"] == "ok"
    await scheduler.shutdown(0)


async def test_a_run_joining_a_callers_lease_keeps_it_held_and_renewed(settings: Settings) -> None:
    """serve's scheduler holds the lease and runs the sync in a child process, which joins that lease by its
    holder's name: the run goes ahead, renews the lease while it works, and leaves it held for its owner."""
    store = StateStore(settings.state.path)
    owner = Lease(store, "scheduler:1", ttl=60)
    assert owner.acquire()
    connector = Slow(delay=0.01)
    result = await sync(settings, connector, lease_holder="scheduler:1")
    assert result.exit_code == 0 and len(connector.sent) == 8
    assert owner.holder_now() == "scheduler:1"  # not released: that is the scheduler's job

    rival = Lease(store, "cron:2", ttl=60)
    assert not rival.acquire()  # still the scheduler's
    owner.release()
    assert rival.acquire()
    refused = Slow()
    with pytest.raises(SyncBusy):  # a run told to join a lease its caller no longer holds does not start
        await sync(settings, refused, lease_holder="scheduler:1")
    assert refused.sent == []
    store.close()


async def test_a_joined_lease_that_is_taken_over_stops_the_run(settings: Settings) -> None:
    """The owner of a joined lease may stall past its ttl and lose it; the run in the child must notice it on
    its own renewal and stop, not go on writing beside the new holder."""
    from accoil_sync.sync.lease import hold

    store = StateStore(settings.state.path)
    assert Lease(store, "scheduler:1", ttl=60).acquire()
    lost = asyncio.Event()
    async with hold(
        settings.state.path, "scheduler:1", ttl=0.3, wait_seconds=0, on_lost=lost.set, release=False
    ):
        with store.transaction() as db:  # another replica takes it over
            db.execute("UPDATE leases SET holder = 'replica:2'")
        await asyncio.wait_for(lost.wait(), 5)
    assert Lease(store, "x", ttl=60).holder_now() == "replica:2"  # left alone, not released
    store.close()
