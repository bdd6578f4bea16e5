"""One run, end to end: source -> stage -> plan per destination -> deliver -> state, with the run ledger."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from accoil_sync.config.settings import Settings
from accoil_sync.connectors import Connector, build_connector
from accoil_sync.connectors.base import Change, UsesSourceView
from accoil_sync.errors import (
    AccoilSyncError,
    ConfigError,
    DestinationError,
    DestinationUnavailable,
    StateStoreError,
)
from accoil_sync.logs import run_id_var
from accoil_sync.sources import Stage
from accoil_sync.sources.view import StageView
from accoil_sync.sync import continuity
from accoil_sync.sync.engine import DeliveryReport, Engine
from accoil_sync.sync.guards import (
    Baseline,
    Hold,
    RemovalVerdict,
    load_baselines,
    removal_verdict,
    save_baselines,
    signature_fact,
    thresholds,
)
from accoil_sync.sync.heal import recheck_policies
from accoil_sync.sync.lease import hold, run_holder
from accoil_sync.sync.planner import DestinationPlan, Planner
from accoil_sync.sync.progress import PlanProgress, Progress, load_with_progress
from accoil_sync.sync.resolve import Resolver
from accoil_sync.sync.result import (
    EXIT_FAILED_RECORDS,
    EXIT_HELD,
    EXIT_INTERRUPTED,
    EXIT_INVALID_ROWS,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    SAMPLE_SIZE,
    STOPPED_AT_ONCE,
    RunResult,
)
from accoil_sync.sync.sanity import sanity_warnings
from accoil_sync.sync.state import StateStore, new_run_id
from accoil_sync.sync.synclog import SyncLog, prune
from accoil_sync.traits.names import ObjectKind

# The run's result and exit codes live in sync/result.py; importers of this module get them here too.
__all__ = [
    "EXIT_FAILED_RECORDS",
    "EXIT_HELD",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID_ROWS",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "STOPPED_AT_ONCE",
    "ConnectorFactory",
    "RunResult",
    "execute",
    "select_destinations",
]

log = logging.getLogger("accoil_sync.run")

ConnectorFactory = Callable[[str, Settings, str], Connector]


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


def _removal_verdicts(
    settings: Settings,
    names: Sequence[str],
    stage: Stage,
    baselines: Mapping[ObjectKind, Baseline],
    allow: bool,
    result: RunResult,
) -> dict[ObjectKind, RemovalVerdict]:
    """Per configured kind, whether absent objects may be removed; the reasons and the sanity warnings go
    into ``result`` (a kind without a source is never removed: it is not in the returned mapping)."""
    verdicts = {
        kind: removal_verdict(kind, stats, baselines[kind], settings.safety, allow=allow)
        for kind, stats in stage.stats.by_kind.items()
        # An events source scores every user and account it ever saw (the rollup keeps their lifetime), so
        # none is ever absent; its source.accounts only describes accounts and never makes one removable.
        if settings.source.kind != "events"
        and (settings.source.users if kind is ObjectKind.USER else settings.source.accounts)
    }
    clearing = any(getattr(settings.destinations, name).removal == "clear" for name in names)
    for kind, verdict in verdicts.items():
        if clearing and verdict.reason:
            result.withheld[kind.value] = verdict.reason
            log.warning("no %s is removed this run: %s", kind.value, verdict.reason)
        elif verdict.shrunk:  # nothing to withhold under "keep", but an emptied export is still news
            result.shrunk[kind.value] = verdict.reason or ""
            log.warning('%s; every object it lacks keeps its values (removal = "keep")', verdict.reason)
    if settings.safety.warnings:
        result.warnings = sanity_warnings(stage, settings.profiles)
        for warning in result.warnings:
            log.warning("%s", warning)
    return verdicts


def _guard(
    settings: Settings,
    state: StateStore,
    planner: Planner,
    name: str,
    connector: Connector,
    allow: bool,
    result: RunResult,
) -> list[Hold]:
    """The thresholds this destination is over (it is then not synced) and the objects it keeps only
    because removals were withheld; both recorded in ``result``."""
    cfg = getattr(settings.destinations, name)
    previous = state.get_fact(signature_fact(name))
    previews = planner.preview(name, connector.encoder, cfg.removal, connector.capabilities.kinds, previous)
    if cfg.removal == "clear":
        kept = sum(p.absent for kind, p in previews.items() if kind.value in result.withheld)
        if kept:
            result.kept[name] = kept
            log.error(
                "%s: %d object(s) absent from the source were not removed (removals withheld)", name, kept
            )
    holds = (
        []
        if allow
        else thresholds(name, cfg, previews, computed_from_events=settings.source.kind == "events")
    )
    if holds:
        result.holds[name] = holds
        for hold in holds:
            log.error("%s", hold)
    return holds


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
    retry_rejected: bool = False,
    accept_new_state: bool = False,
    limit: int | None = None,
    run_id: str | None = None,
    connector_factory: ConnectorFactory = build_connector,
    progress: Progress | None = None,
    sample_size: int = SAMPLE_SIZE,
    error_limit: int = 1000,
    halt: asyncio.Event | None = None,
    allow_mass_change: bool = False,
    resolve: bool = False,
    lease_holder: str | None = None,
) -> RunResult:
    """Plan (``deliver=False``) or sync. The state store is only written when delivering, and only under
    its sync lease (``sync.lease``): a caller that already holds it passes its ``lease_holder``.
    ``allow_mass_change`` lets this run past the safety thresholds (as ``safety.allow_mass_change``);
    ``resolve`` (plan only): look the planned records up in each CRM that can, read-only."""

    async def run(halt: asyncio.Event | None, holder: str) -> RunResult:
        return await _execute(
            settings,
            deliver=deliver,
            destinations=destinations,
            full_refresh=full_refresh,
            retry_rejected=retry_rejected,
            accept_new_state=accept_new_state,
            limit=limit,
            run_id=run_id,
            connector_factory=connector_factory,
            progress=progress,
            sample_size=sample_size,
            error_limit=error_limit,
            halt=halt,
            allow_mass_change=allow_mass_change or settings.safety.allow_mass_change,
            resolve=resolve,
            holder=holder,
        )

    with _bulk_allocation():
        if not deliver:
            return await run(halt, "")
        select_destinations(settings, destinations)  # a usage error needs no lease
        # A caller that holds the lease (serve's scheduler) passes its name: the run joins that lease --
        # at once or not at all, and leaves releasing it to the caller -- but still watches it, so a run
        # whose lease was taken over stops in whichever process it executes.
        holder = lease_holder or run_holder()
        halt = halt or asyncio.Event()
        state_cfg = settings.state
        async with hold(
            state_cfg.path,
            holder,
            ttl=settings.serve.lease_seconds,
            wait_seconds=state_cfg.wait_seconds
            if state_cfg.on_busy == "wait" and lease_holder is None
            else 0,
            on_lost=halt.set,
            release=lease_holder is None,
        ):
            return await run(halt, holder)


async def _execute(
    settings: Settings,
    *,
    deliver: bool,
    destinations: Sequence[str] | None,
    full_refresh: bool,
    retry_rejected: bool,
    accept_new_state: bool,
    limit: int | None,
    run_id: str | None,
    connector_factory: ConnectorFactory,
    progress: Progress | None,
    sample_size: int,
    error_limit: int,
    halt: asyncio.Event | None,
    allow_mass_change: bool,
    resolve: bool,
    holder: str,
) -> RunResult:
    names = select_destinations(settings, destinations)
    run_id = run_id or new_run_id()
    run_id_var.set(run_id)
    state_dir = settings.state.directory
    state = StateStore(settings.state.path)
    stage: Stage | None = None
    synclog: SyncLog | None = None
    result: RunResult | None = None
    completed = cancelled = False
    try:
        if deliver:
            continuity.check(settings, state, accept_new_state=accept_new_state)
            if n := state.mark_interrupted(holder):
                log.warning(
                    "%d earlier run(s) ended without finishing (killed?); their acknowledged writes are kept",
                    n,
                )
            state.start_run(run_id, "sync")
            prune(state_dir / "synclog", settings.state.synclog_retention_days)
            synclog = SyncLog(state_dir / "synclog", run_id)
        elif state.is_new() and (found := continuity.evidence(settings)):
            log.warning(
                "the state store is new, but earlier deliveries exist (%s): a sync would refuse", found[0]
            )
        stage = Stage(state_dir / "tmp", settings.profiles, run_id)
        baselines = load_baselines(state)
        # A column the source had at the last accepted run is required again, unless this run is allowed
        # to drop it (its values are then cleared like any emptied field).
        expected = {kind: () if allow_mass_change else b.columns for kind, b in baselines.items()}
        # An events source's explanations cost a pass per profile: staged for the card and for plan's
        # samples only.
        explain = not deliver or "card" in names
        load_with_progress(stage, settings.source, progress, expected, explain=explain)
        result = RunResult(
            run_id,
            stage.stats,
            fail_on_invalid_rows=settings.safety.fail_on_invalid_rows,
            fail_on_old_rejections=settings.safety.fail_on_old_rejections,
        )
        verdicts = _removal_verdicts(settings, names, stage, baselines, allow_mass_change, result)
        result.errors = stage.errors(limit=error_limit)
        result.error_summary = stage.error_summary()
        result.duplicates = [
            (kind.value, *dup) for kind in stage.stats.by_kind for dup in stage.duplicates(kind)
        ]
        for kind, s in stage.stats.by_kind.items():
            log.info(
                "source %ss: %d rows read, %d valid, %d invalid, %d file error(s), %d duplicate keys, %d objects",
                kind.value,
                s.rows_read,
                s.valid,
                s.invalid_rows,
                s.file_errors,
                s.duplicates,
                s.objects,
            )
        bars: dict[str, PlanProgress] = {}
        planner = Planner(
            stage,
            state,
            full_refresh=full_refresh,
            removable={kind: v.allowed for kind, v in verdicts.items()},
            recheck=recheck_policies(settings, retry_rejected=retry_rejected),
            progress=bars.get if progress is not None else None,
        )
        for name in names:
            if halt is not None and halt.is_set():
                result.halted = True
                break
            connector = connector_factory(name, settings, run_id)
            if isinstance(connector, UsesSourceView):
                # Read-only lookups into this run's stage (Segment's member group calls); see ARCHITECTURE.
                connector.bind_source(StageView(stage))
            sending = None
            if progress is not None:
                planning = progress.task(f"{name}: planning", 0)
                sending = progress.task(f"{name}: sending", 0) if deliver else None
                bars[name] = PlanProgress(planning, sending)
            plan = DestinationPlan(name)
            result.plans[name] = plan
            removal = getattr(settings.destinations, name).removal
            holds = _guard(settings, state, planner, name, connector, allow_mass_change, result)
            changes = planner.plan(name, connector.encoder, removal, connector.capabilities.kinds, plan)
            try:
                if not deliver:
                    samples: list[Change] = []
                    resolver = Resolver(connector) if resolve and connector.capabilities.resolves else None
                    for change in changes:
                        if change.op != "refresh" and len(samples) < sample_size:
                            samples.append(change)
                        if resolver is not None:
                            await resolver.add(change)
                    result.samples[name] = samples
                    if resolver is not None:
                        result.resolutions[name] = await resolver.finish()
                    continue
                if holds:
                    state.add_counts(run_id, name, {}, {})
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
                    on_progress=sending.advance if sending is not None else None,
                    halt=halt,
                )
                report = await engine.run(changes)
                result.deliveries[name] = report
                result.halted = result.halted or report.halted
                if not report.stopped and not report.halted:
                    state.set_fact(signature_fact(name), connector.encoder.signature)
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
        if deliver and not result.halted:
            save_baselines(state, verdicts, stage.stats)
        completed = True
        return result
    except asyncio.CancelledError:
        cancelled = True  # a second Ctrl-C: stopped at once; what was acknowledged is committed
        raise
    finally:
        if stage is not None:
            stage.close()
        if synclog is not None:
            synclog.close()
        if deliver:
            raised = sys.exc_info()[1]  # the error this run stops with, if any: its exit code, its words
            try:
                if result is None or not completed:
                    invalid = result.source.invalid if result else 0
                    if cancelled:
                        state.finish_run(run_id, "interrupted", EXIT_INTERRUPTED, invalid, STOPPED_AT_ONCE)
                    else:
                        code = getattr(raised, "exit_code", EXIT_USAGE)
                        words = str(raised)[:500] if isinstance(raised, AccoilSyncError) else None
                        state.finish_run(
                            run_id, "failed", code, invalid, words or "the run stopped before it finished"
                        )
                else:
                    code = result.exit_code
                    stopped = "; ".join(
                        f"{n}: {d.stopped}" for n, d in result.deliveries.items() if d.stopped
                    )
                    state.finish_run(run_id, result.status, code, result.source.invalid, stopped or None)
            except StateStoreError as exc:  # the store failing is already the run's error, or becomes it
                if raised is None:
                    raise
                log.error("could not close run %s in the ledger: %s", run_id, exc)
        state.close()
