"""One run, end to end: source -> stage -> plan per destination -> deliver -> state, with the run ledger."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from accoil_sync.config.settings import Settings
from accoil_sync.connectors import Connector, build_connector
from accoil_sync.connectors.base import Change
from accoil_sync.errors import ConfigError, DestinationError, DestinationUnavailable
from accoil_sync.logs import run_id_var
from accoil_sync.sources import Stage, load_stage
from accoil_sync.sources.base import RowError
from accoil_sync.sources.stage import SourceStats
from accoil_sync.sync.engine import DeliveryReport, Engine
from accoil_sync.sync.planner import DestinationPlan, Planner
from accoil_sync.sync.state import StateStore, new_run_id
from accoil_sync.sync.synclog import SyncLog, prune

log = logging.getLogger("accoil_sync.run")

EXIT_OK, EXIT_FAILED_RECORDS, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
SAMPLE_SIZE = 5

ConnectorFactory = Callable[[str, Settings, str], Connector]
ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass(slots=True)
class RunResult:
    run_id: str
    source: SourceStats
    plans: dict[str, DestinationPlan] = field(default_factory=dict)
    deliveries: dict[str, DeliveryReport] = field(default_factory=dict)
    samples: dict[str, list[Change]] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    error_summary: list[tuple[str, int]] = field(default_factory=list)
    duplicates: list[tuple[str, str, str, int, list[str]]] = field(default_factory=list)

    halted: bool = False  # stopped early by a shutdown

    @property
    def status(self) -> str:
        """The run ledger's word for this result: ok, partial, interrupted or failed."""
        if self.halted:
            return "interrupted"
        return {EXIT_OK: "ok", EXIT_FAILED_RECORDS: "partial"}.get(self.exit_code, "failed")

    @property
    def exit_code(self) -> int:
        if self.halted or any(d.stopped for d in self.deliveries.values()):
            return EXIT_UNAVAILABLE
        if self.source.invalid or any(d.failed for d in self.deliveries.values()):
            return EXIT_FAILED_RECORDS
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "exit_code": self.exit_code,
            "source": {
                kind.value: {
                    "rows": s.rows,
                    "valid": s.valid,
                    "invalid": s.invalid,
                    "duplicates": s.duplicates,
                    "objects": s.objects,
                }
                for kind, s in self.source.by_kind.items()
            },
            "invalid_rows": [
                {
                    "kind": e.kind.value,
                    "file": e.file,
                    "row": e.row,
                    "column": e.column,
                    "reason": e.reason,
                    "key": e.key,
                }
                for e in self.errors
            ],
            "duplicates": [
                {"kind": kind, "key": key, "profile": profile, "count": n, "rows": rows}
                for kind, key, profile, n, rows in self.duplicates
            ],
            "destinations": {
                name: {
                    "plan": {kind.value: _counts(c) for kind, c in plan.counts.items()},
                    "sample": [
                        {
                            "kind": ch.kind.value,
                            "key": ch.key,
                            "op": ch.op,
                            "changes": {
                                f: {"from": ch.previous.get(f), "to": v} for f, v in ch.fields.items()
                            },
                        }
                        for ch in self.samples.get(name, [])
                    ],
                    **(
                        {
                            "delivery": {
                                "counts": dict(d.counts),
                                "by_kind": {k: dict(v) for k, v in d.by_kind.items()},
                                "reasons": dict(d.reasons),
                                "stopped": d.stopped,
                                "limited": d.limited,
                            }
                        }
                        if (d := self.deliveries.get(name))
                        else {}
                    ),
                }
                for name, plan in self.plans.items()
            },
        }


def _counts(c: Any) -> dict[str, int]:
    return {
        k: getattr(c, k)
        for k in ("objects", "new", "changed", "unchanged", "refresh", "clear", "still_rejected", "retrying")
    }


@contextmanager
def _bulk_allocation() -> Iterator[None]:
    """A sync allocates millions of short-lived objects; at the default threshold (700 allocations) the
    cyclic collector walks the batches in flight thousands of times, about a tenth of a first sync's time.
    Collections still happen, only less often; the old threshold is restored after the run."""
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], 100_000), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def select_destinations(settings: Settings, requested: Sequence[str] | None) -> list[str]:
    enabled = list(settings.destinations.enabled())
    if not requested:
        if not enabled:
            raise ConfigError(
                [("destinations", "no destination is enabled; set destinations.<name>.enabled = true")]
            )
        return enabled
    unknown = [name for name in requested if name not in enabled]
    if unknown:
        raise ConfigError(
            [("--destination", f"{', '.join(unknown)} not enabled (enabled: {', '.join(enabled) or 'none'})")]
        )
    return list(requested)


async def execute(
    settings: Settings,
    *,
    deliver: bool,
    destinations: Sequence[str] | None = None,
    full_refresh: bool = False,
    limit: int | None = None,
    run_id: str | None = None,
    connector_factory: ConnectorFactory = build_connector,
    progress: ProgressFactory | None = None,
    sample_size: int = SAMPLE_SIZE,
    error_limit: int = 1000,
    halt: asyncio.Event | None = None,
) -> RunResult:
    """Plan (``deliver=False``) or sync. The state store is only written when delivering."""
    with _bulk_allocation():
        return await _execute(
            settings,
            deliver=deliver,
            destinations=destinations,
            full_refresh=full_refresh,
            limit=limit,
            run_id=run_id,
            connector_factory=connector_factory,
            progress=progress,
            sample_size=sample_size,
            error_limit=error_limit,
            halt=halt,
        )


async def _execute(
    settings: Settings,
    *,
    deliver: bool,
    destinations: Sequence[str] | None,
    full_refresh: bool,
    limit: int | None,
    run_id: str | None,
    connector_factory: ConnectorFactory,
    progress: ProgressFactory | None,
    sample_size: int,
    error_limit: int,
    halt: asyncio.Event | None,
) -> RunResult:
    names = select_destinations(settings, destinations)
    run_id = run_id or new_run_id()
    run_id_var.set(run_id)
    state_dir = settings.state.directory
    state = StateStore(settings.state.path)
    stage: Stage | None = None
    synclog: SyncLog | None = None
    result: RunResult | None = None
    completed = False
    try:
        if deliver:
            if n := state.mark_interrupted():
                log.warning(
                    "%d earlier run(s) ended without finishing (killed?); their acknowledged writes are kept",
                    n,
                )
            state.start_run(run_id, "sync")
            prune(state_dir / "synclog", settings.state.synclog_retention_days)
            synclog = SyncLog(state_dir / "synclog", run_id)
        stage = Stage(state_dir / "tmp", settings.profiles, run_id)
        load_stage(stage, settings.source)
        result = RunResult(run_id, stage.stats)
        result.errors = stage.errors(limit=error_limit)
        result.error_summary = stage.error_summary()
        result.duplicates = [
            (kind.value, *dup) for kind in stage.stats.by_kind for dup in stage.duplicates(kind)
        ]
        for kind, s in stage.stats.by_kind.items():
            log.info(
                "source %ss: %d rows, %d valid, %d invalid, %d duplicate keys, %d objects",
                kind.value,
                s.rows,
                s.valid,
                s.invalid,
                s.duplicates,
                s.objects,
            )
        planner = Planner(stage, state, full_refresh=full_refresh)
        for name in names:
            if halt is not None and halt.is_set():
                result.halted = True
                break
            connector = connector_factory(name, settings, run_id)
            plan = DestinationPlan(name)
            result.plans[name] = plan
            removal = getattr(settings.destinations, name).removal
            changes = planner.plan(name, connector.encoder, removal, connector.capabilities.kinds, plan)
            try:
                if not deliver:
                    samples: list[Change] = []
                    for change in changes:
                        if change.op != "refresh" and len(samples) < sample_size:
                            samples.append(change)
                    result.samples[name] = samples
                    continue
                try:
                    await connector.ensure_schema()
                except DestinationError as exc:
                    # A schema we cannot use (a type clash, the attribute cap, refused credentials) or cannot
                    # read or create (a 5xx or timeout that outlived the retry policy) stops this
                    # destination, not the run.
                    why = (
                        str(exc) if isinstance(exc, DestinationUnavailable) else f"schema setup failed: {exc}"
                    )
                    log.error("%s stopped before sending: %s", name, why)
                    result.deliveries[name] = DeliveryReport(name, stopped=why)
                    state.add_counts(run_id, name, {}, {})
                    continue
                assert synclog is not None
                engine = Engine(
                    connector,
                    state,
                    synclog,
                    run_id,
                    limit=limit,
                    on_progress=progress(name, 0) if progress else None,
                    halt=halt,
                )
                report = await engine.run(changes)
                result.deliveries[name] = report
                result.halted = result.halted or report.halted
                state.add_counts(run_id, name, dict(report.counts), dict(report.reasons))
                log.info(
                    "%s: %s%s",
                    name,
                    dict(report.counts) or "nothing to send",
                    f" (stopped: {report.stopped})" if report.stopped else "",
                )
            finally:
                changes.close()
                await connector.aclose()
        completed = True
        return result
    finally:
        if stage is not None:
            stage.close()
        if synclog is not None:
            synclog.close()
        if deliver:
            if result is None or not completed:
                invalid = result.source.invalid if result else 0
                state.finish_run(run_id, "failed", EXIT_USAGE, invalid, "the run stopped before it finished")
            else:
                code = result.exit_code
                stopped = "; ".join(f"{n}: {d.stopped}" for n, d in result.deliveries.items() if d.stopped)
                state.finish_run(run_id, result.status, code, result.source.invalid, stopped or None)
        state.close()
