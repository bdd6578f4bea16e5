"""Runs a ``serve`` sync in a process of its own, so the card's event loop never waits on it.

Planning a large source holds the GIL for seconds at a time (DuckDB, the planner's Python loops); in the
server's own process that stalled every card request and ``/healthz`` behind it. The child is spawned
(not forked: the parent has threads and open SQLite handles), runs ``runner.execute`` and sends back
the ``RunResult`` and the Prometheus counters it moved, which the parent adds to its own registry, so
``/metrics`` and alerts read as before. The parent keeps the sync lease and renews it; a shutdown
(``halt``) is relayed to the child, which stops launching batches and commits what is in flight; a child
whose parent is gone halts the same way rather than run on without a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

from prometheus_client import Counter

from accoil_sync import logs, telemetry
from accoil_sync.config.settings import Settings
from accoil_sync.errors import AccoilSyncError
from accoil_sync.sync.runner import RunResult, execute

log = logging.getLogger("accoil_sync.scheduler")
_SPAWN = multiprocessing.get_context("spawn")
# Counted by the parent itself from the RunResult; the child's copies would count twice.
_PARENT_COUNTED = {"accoil_sync_runs", "accoil_sync_records"}

CHILD_NICENESS = 10
CounterSample = tuple[str, dict[str, str], float]


class ChildFailed(AccoilSyncError):
    """The sync process ended without a result (a crash, or killed from outside)."""


def _counters() -> list[CounterSample]:
    out = []
    for family in telemetry.REGISTRY.collect():
        if family.type != "counter" or family.name in _PARENT_COUNTED:
            continue
        out += [(family.name, dict(s.labels), s.value) for s in family.samples if s.name.endswith("_total")]
    return [c for c in out if c[2]]


def merge_counters(samples: Sequence[CounterSample]) -> None:
    """Add what a child process counted to this process's counters of the same name."""
    counters = {
        next(iter(metric.describe())).name: metric
        for metric in vars(telemetry).values()
        if isinstance(metric, Counter)
    }
    for name, labels, value in samples:
        counter = counters.get(name)
        if counter is not None and value > 0:
            (counter.labels(**labels) if labels else counter).inc(value)


def _child(
    settings: Settings,
    run_id: str,
    stop: ProcessEvent,
    out: Connection,
    log_setup: tuple[str, str, tuple[str, ...]],
    lease_holder: str | None = None,
) -> None:
    logs.setup(*log_setup)
    # Background work: on a busy host the scheduler lets the card's requests (the parent) go first.
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICENESS)
    # A Ctrl-C in a terminal reaches the whole process group: the parent decides when its sync stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    async def main() -> RunResult:
        halt = asyncio.Event()

        async def watch() -> None:
            # Neither a process-shared Event nor the parent's death is awaitable; a 0.2 s poll is cheap
            # and a thread blocked in stop.wait() would hold up asyncio.run's exit.
            while not (stop.is_set() or os.getppid() != parent):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            halt.set()

        watcher = asyncio.create_task(watch())
        try:
            # The parent holds the lease under this name: the run takes it as its own (re-entrant), not as a rival.
            return await execute(settings, deliver=True, run_id=run_id, halt=halt, lease_holder=lease_holder)
        finally:
            watcher.cancel()

    payload: tuple[str, Any, list[CounterSample]]
    try:
        payload = ("ok", asyncio.run(main()), [])
    except AccoilSyncError as exc:
        payload = ("error", str(exc), [])
    except Exception as exc:  # a bug: logged here, with its traceback, and reported to the parent
        log.exception("sync %s crashed", run_id)
        payload = ("crash", f"{type(exc).__name__}: {exc}", [])
    out.send((payload[0], payload[1], _counters()))
    out.close()


async def run_in_child(
    settings: Settings,
    *,
    run_id: str,
    halt: asyncio.Event,
    lease_holder: str | None = None,
    **_: object,
) -> RunResult:
    """``runner.execute(settings, deliver=True)`` in a spawned process; the Scheduler's ``executor``."""
    receive, send = _SPAWN.Pipe(duplex=False)
    stop = _SPAWN.Event()
    process = _SPAWN.Process(
        target=_child,
        args=(settings, run_id, stop, send, logs.current, lease_holder),
        name=f"accoil-sync-run-{run_id}",
        daemon=True,
    )
    process.start()
    send.close()

    async def relay() -> None:
        await halt.wait()
        stop.set()

    relaying = asyncio.create_task(relay())
    try:
        outcome = await asyncio.to_thread(_receive, receive, process)
    except asyncio.CancelledError:
        # The shutdown grace ran out: the batches in flight were never acknowledged, so they are
        # simply planned again next run.
        process.terminate()
        await asyncio.to_thread(process.join, 5)
        if process.is_alive():
            process.kill()
        raise
    finally:
        relaying.cancel()
        with contextlib.suppress(Exception):
            receive.close()
    await asyncio.to_thread(process.join, 10)
    kind, value, counters = outcome
    merge_counters(counters)
    if kind == "ok":
        assert isinstance(value, RunResult)
        return value
    if kind == "error":
        raise AccoilSyncError(value)
    raise ChildFailed(f"the sync process failed: {value}")


def _receive(receive: Connection, process: Any) -> tuple[str, Any, list[CounterSample]]:
    try:
        return receive.recv()  # type: ignore[no-any-return]
    except EOFError:
        process.join(5)
        return ("crash", f"it exited with code {process.exitcode} before reporting", [])
