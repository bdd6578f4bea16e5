"""Runs syncs for ``serve``: on a cron schedule and on demand, never two at once.

"Never two at once" holds across replicas sharing one state store: a run starts only with the store's
``sync`` lease, which it renews while it works. On shutdown the scheduler stops launching batches, lets the
ones in flight finish and commit for up to ``shutdown_grace_seconds``, then cancels what is left -- an
abandoned batch was never acknowledged, so it is simply planned again next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import croniter

from accoil_sync.config.settings import Settings
from accoil_sync.connectors import build_connector
from accoil_sync.errors import AccoilSyncError
from accoil_sync.serve.alerts import Alerter
from accoil_sync.sync.lease import Lease
from accoil_sync.sync.runner import ConnectorFactory, RunResult, execute
from accoil_sync.sync.state import StateStore, new_run_id
from accoil_sync.telemetry import LAST_SUCCESS, RECORDS, RUN_IN_PROGRESS, RUN_SECONDS, RUNS

log = logging.getLogger("accoil_sync.scheduler")


@dataclass(frozen=True, slots=True)
class Started:
    run_id: str


@dataclass(frozen=True, slots=True)
class Busy:
    reason: str


Executor = Callable[..., Awaitable[RunResult]]


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        *,
        alerter: Alerter | None = None,
        connector_factory: ConnectorFactory = build_connector,
        executor: Executor = execute,
        holder: str | None = None,
    ) -> None:
        self.settings = settings
        self.state = StateStore(settings.state.path)
        self.lease = Lease(
            self.state, holder or f"{socket.gethostname()}:{os.getpid()}", ttl=settings.serve.lease_seconds
        )
        self.alerter = alerter
        self.connector_factory = connector_factory
        self.executor = executor
        self.halt = asyncio.Event()
        self.current: asyncio.Task[None] | None = None
        self.current_run: str | None = None
        self.last: dict[str, str | int | None] = {}
        self._loop_task: asyncio.Task[None] | None = None

    # --------------------------------------------------------------------------------------- triggers

    def trigger(self, why: str) -> Started | Busy:
        if self.halt.is_set():
            return Busy("shutting down")
        if self.current is not None and not self.current.done():
            return Busy(f"run {self.current_run} is in progress in this process")
        holder = self.lease.holder_now()
        if holder is not None and holder != self.lease.holder:
            return Busy(f"another replica ({holder}) holds the sync lock")
        run_id = new_run_id()
        self.current_run = run_id
        self.current = asyncio.create_task(self._run(run_id, why), name=f"sync-{run_id}")
        return Started(run_id)

    def start(self) -> None:
        if self.settings.serve.schedule and self._loop_task is None:
            self._loop_task = asyncio.create_task(self._schedule_loop(self.settings.serve.schedule))

    async def _schedule_loop(self, expression: str) -> None:
        cron = croniter(expression, datetime.now(UTC))
        while not self.halt.is_set():
            due = cron.get_next(float)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.halt.wait(), max(0.0, due - time.time()))
                return  # halted while waiting
            outcome = self.trigger("schedule")
            if isinstance(outcome, Busy):
                log.info("scheduled sync skipped: %s", outcome.reason)

    # ------------------------------------------------------------------------------------------- a run

    async def _run(self, run_id: str, why: str) -> None:
        acquired = self.lease.acquire()  # one short transaction; no thread shares this connection
        if not acquired:
            log.info("sync %s skipped: another replica holds the sync lock", run_id)
            RUNS.labels("skipped", why).inc()
            return
        renewer = asyncio.create_task(self._renew())
        started = time.monotonic()
        RUN_IN_PROGRESS.set(1)
        result: RunResult | None = None
        error: str | None = None
        try:
            result = await self.executor(
                self.settings,
                deliver=True,
                run_id=run_id,
                connector_factory=self.connector_factory,
                halt=self.halt,
                lease_holder=self.lease.holder,  # this run's lease is the one taken above
            )
        except AccoilSyncError as exc:
            error = str(exc)
            log.error("sync %s failed: %s", run_id, exc)
        except Exception as exc:  # a bug must not take the server down with it; it is logged and alerted
            error = f"{type(exc).__name__}: {exc}"
            log.exception("sync %s crashed", run_id)
        finally:
            renewer.cancel()
            RUN_IN_PROGRESS.set(0)
            self.lease.release()
        RUN_SECONDS.observe(time.monotonic() - started)
        status = "failed" if result is None else result.status
        RUNS.labels(status, why).inc()
        if result is not None:
            for name, report in result.deliveries.items():
                for outcome, n in report.counts.items():
                    RECORDS.labels(name, outcome).inc(n)
            if result.settled:
                LAST_SUCCESS.set(time.time())
        self.last = {
            "run_id": run_id,
            "status": status,
            "exit_code": None if result is None else result.exit_code,
        }
        if self.alerter is not None and not (result is not None and result.halted):
            await self.alerter.after_run(run_id, result, error)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.lease.ttl / 3)
            if not self.lease.renew():
                log.error("lost the sync lock (the store was unreachable longer than its lease?)")

    # --------------------------------------------------------------------------------------- shutdown

    async def shutdown(self, grace: float) -> None:
        self.halt.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
        task = self.current
        if task is not None and not task.done():
            log.info("waiting up to %.0fs for the in-flight batches of run %s", grace, self.current_run)
            done, _ = await asyncio.wait({task}, timeout=grace)
            if not done:
                log.warning(
                    "run %s abandoned at shutdown; unacknowledged batches are re-planned next run",
                    self.current_run,
                )
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.alerter is not None:
            await self.alerter.aclose()
        self.state.close()
