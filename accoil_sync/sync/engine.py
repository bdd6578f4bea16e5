"""The delivery engine: batches changes, bounds concurrency per destination, commits each acknowledged batch.

State is written only after the destination acknowledged a batch, in one transaction with that batch's
failures. A destination that refuses auth (or stays down past its retry budget) raises
``DestinationUnavailable``: the engine stops sending to it, lets in-flight batches finish and commit, and
leaves everything else for the next run.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from accoil_sync.connectors.base import Change, Connector, Outcome
from accoil_sync.errors import DestinationUnavailable, PermanentError, RetryableError, StateStoreError
from accoil_sync.sync.state import (
    STATUS_REJECTED,
    STATUS_RETRYABLE,
    Acknowledged,
    Failed,
    StateStore,
    explain,
    now_iso,
    reason_class_of,
)
from accoil_sync.sync.synclog import SyncLog
from accoil_sync.traits.encoders import FieldValue
from accoil_sync.traits.names import ObjectKind

log = logging.getLogger("accoil_sync.engine")

EXAMPLES = 20  # failures kept per reason class in a run's report


@dataclass(slots=True)
class DeliveryReport:
    destination: str
    counts: Counter[str] = field(default_factory=Counter)  # ok / retryable / rejected / refreshed
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)  # failures by reason class (connectors.base)
    # The first failures of each class, (key, the vendor's reason): for callers and `--json`'s keys; the
    # reasons can hold emails, so nothing logs or alerts them (`accoil-sync failures` reads the store).
    examples: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    # The first objects cleared for leaving the source, (kind, key): what a person checks after a removal.
    cleared: list[tuple[str, str]] = field(default_factory=list)
    stopped: str | None = None
    limited: int = 0  # changes left for a later run by --limit
    halted: bool = False  # a shutdown asked the run to stop; what was in flight finished and was committed

    @property
    def failed(self) -> int:
        return self.counts["retryable"] + self.counts["rejected"]

    def reason_texts(self) -> list[str]:
        """The vendor's reasons of the example failures, every class."""
        return [reason for examples in self.examples.values() for _, reason in examples]


class Committer:
    """Writes acknowledged batches to the state store and the sync log on one worker thread.

    The thread has its own SQLite connection, so the database work of one batch -- and the fsyncs of WAL
    checkpoints -- runs outside the GIL while the event loop plans and sends the next ones. One thread
    keeps the writes in order and never contends with itself for SQLite's write lock.
    """

    def __init__(self, path: Path, synclog: SyncLog) -> None:
        self._path = path
        self._synclog = synclog
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="accoil-commit")
        self._state: StateStore | None = None

    async def commit(
        self,
        destination: str,
        kind: str,
        acknowledged: list[Acknowledged],
        failed: list[Failed],
        lines: list[tuple[object, ...]] | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._write, destination, kind, acknowledged, failed, lines)

    async def note(self, destination: str, kind: str, batch: Sequence[Change]) -> None:
        """Before ``batch`` is sent: its write-ahead notes (sync/pending.py), in order with the commits."""
        writes = [(c.key, c.fields) for c in batch]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._note, destination, kind, writes)

    def _note(self, destination: str, kind: str, writes: list[tuple[str, dict[str, FieldValue]]]) -> None:
        if self._state is None:
            self._state = StateStore(self._path)
        self._state.note(destination, kind, writes)

    async def unsent(self, destination: str, kind: str, batch: Sequence[Change]) -> None:
        """``batch`` was noted and then not sent (the run halted, or the destination stopped, before its
        turn): the notes it made go, so the next run plans its keys by their values alone."""
        keys = [c.key for c in batch]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._unnote, destination, kind, keys)

    def _unnote(self, destination: str, kind: str, keys: list[str]) -> None:
        if self._state is not None:
            self._state.unnote(destination, kind, keys)

    def _write(
        self,
        destination: str,
        kind: str,
        acknowledged: list[Acknowledged],
        failed: list[Failed],
        lines: list[tuple[object, ...]] | None,
    ) -> None:
        if self._state is None:
            self._state = StateStore(self._path)
        if lines:
            # First the audit lines, then the state: a kill between the two logs a batch twice (it is
            # re-sent), never delivers one unlogged.
            try:
                self._synclog.extend(lines)
            except OSError as exc:
                raise explain(self._synclog.stream_path, "write the sync log", exc) from exc
        self._state.commit_batch(destination, kind, acknowledged, failed)

    def close(self) -> None:
        """Waits for a write still running: a commit that began always ends, even when the run was
        cancelled, and the sync log is never closed under it."""
        self._pool.submit(self._close)
        self._pool.shutdown(wait=True)

    def _close(self) -> None:
        if self._state is not None:
            self._state.close()


class Engine:
    def __init__(
        self,
        connector: Connector,
        state: StateStore,
        synclog: SyncLog,
        run_id: str,
        *,
        limit: int | None = None,
        on_progress: Callable[[int], None] | None = None,
        halt: asyncio.Event | None = None,
    ) -> None:
        self.connector = connector
        self.committer = Committer(state.path, synclog)
        self.run_id = run_id
        self.limit = limit
        self.on_progress = on_progress
        self.report = DeliveryReport(connector.name)
        self._stop = asyncio.Event()
        self.halt = halt or asyncio.Event()
        self.state_error: StateStoreError | None = None  # a commit failed: nothing more is sent

    async def run(self, changes: Iterable[Change]) -> DeliveryReport:
        try:
            report = await self._run_cancellable(changes)
        finally:
            self.committer.close()
        if self.state_error is not None:
            raise self.state_error
        return report

    async def _run(self, changes: Iterable[Change]) -> DeliveryReport:
        caps = self.connector.capabilities
        slots = asyncio.Semaphore(caps.max_concurrency)  # requests in flight
        # Batches answered but not yet committed: bounds memory when the state store is slower than the
        # destination.
        unsettled = asyncio.Semaphore(2 * caps.max_concurrency)
        tasks = self._tasks
        batch: list[Change] = []
        refresh: list[Change] = []
        sent = 0

        async def launch(kind: ObjectKind, items: list[Change]) -> None:
            await unsettled.acquire()
            task = asyncio.create_task(self._deliver(kind, items, slots, unsettled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        for change in changes:
            if self._stop.is_set():
                break
            if self.halt.is_set():
                self.report.halted = True
                break
            if change.op == "refresh":
                refresh.append(change)
                if len(refresh) >= 1000:
                    await self._commit_refresh(refresh)
                    refresh = []
                continue
            if self.limit is not None and sent >= self.limit:
                self.report.limited += 1
                continue
            if batch and (batch[0].kind is not change.kind or len(batch) >= caps.max_batch):
                await launch(batch[0].kind, batch)
                batch = []
            batch.append(change)
            sent += 1
        if batch and not self._stop.is_set() and not self.halt.is_set():
            await launch(batch[0].kind, batch)
        if refresh:
            await self._commit_refresh(refresh)
        if tasks:
            await asyncio.gather(*tasks)
        return self.report

    async def _run_cancellable(self, changes: Iterable[Change]) -> DeliveryReport:
        """``_run``, and on cancellation (Ctrl-C) the batches already launched are cancelled and awaited
        too: left running, they would meet a closed client and die as "Task exception was never
        retrieved" tracebacks. Nothing they had sent was acknowledged, so it is planned again."""
        self._tasks: set[asyncio.Task[None]] = set()
        try:
            return await self._run(changes)
        except asyncio.CancelledError:
            launched = list(self._tasks)
            for task in launched:
                task.cancel()
            await asyncio.gather(*launched, return_exceptions=True)
            raise

    async def _deliver(
        self,
        kind: ObjectKind,
        batch: Sequence[Change],
        slots: asyncio.Semaphore,
        unsettled: asyncio.Semaphore,
    ) -> None:
        try:
            if self._skipped():
                return
            try:
                # Written before a request slot is taken: the commit thread's queue is not waited on
                # with a slot held.
                await self.committer.note(self.connector.name, kind.value, batch)
            except StateStoreError as exc:
                await self._uncommitted(kind, [], exc)
                return
            await slots.acquire()
            # The request slot is given back once the destination answered, so the next batch is sent
            # while this one's commit waits for the commit thread.
            sent = True
            try:
                if self._skipped():
                    sent = False
                else:
                    outcomes = await self.connector.deliver(kind, batch)
            except DestinationUnavailable as exc:
                if not self._stop.is_set():
                    self.report.stopped = str(exc)
                    log.error("%s stopped: %s", self.connector.name, exc)
                self._stop.set()
                if not exc.before_sending:
                    return
                sent = False
            except RetryableError as exc:
                outcomes = [Outcome.retry(c.key, str(exc)) for c in batch]
            except PermanentError as exc:
                outcomes = [Outcome.reject(c.key, str(exc)) for c in batch]
            finally:
                slots.release()
            if not sent:  # the slot is free again before the commit thread drops the notes
                await self._unsent(kind, batch)
                return
            try:
                await self._commit(kind, batch, outcomes)
            except StateStoreError as exc:
                await self._uncommitted(kind, batch, exc)
        finally:
            unsettled.release()

    async def _unsent(self, kind: ObjectKind, batch: Sequence[Change]) -> None:
        try:
            await self.committer.unsent(self.connector.name, kind.value, batch)
        except StateStoreError as exc:  # the notes stay: one more write each next run, nothing lost
            log.warning("%s: notes of a batch not sent stay: %s", self.connector.name, exc)

    def _skipped(self) -> bool:
        """Whether a batch not yet sent is left for the next run (where it stays planned): the destination
        stopped, or a shutdown asked the run to halt -- which the report must say even when the plan had
        been read to its end before the signal came."""
        if self.halt.is_set():
            self.report.halted = True
        return self._stop.is_set() or self.halt.is_set()

    async def _uncommitted(self, kind: ObjectKind, batch: Sequence[Change], exc: StateStoreError) -> None:
        """The destination has a batch the state store could not record: stop sending (every later commit
        would fail alike), and let an append-only destination take the batch back, so that the re-send
        the next run makes is not a second copy there (``discard``, optional in the protocol)."""
        if self.state_error is None:
            self.state_error = exc
            log.error("%s: stopping, the state store cannot record deliveries: %s", self.connector.name, exc)
        self._stop.set()
        discard = getattr(self.connector, "discard", None)
        if discard is not None and batch:
            await discard(kind, batch)

    async def _commit(self, kind: ObjectKind, batch: Sequence[Change], outcomes: Sequence[Outcome]) -> None:
        by_key = {o.key: o for o in outcomes}
        acked: list[Acknowledged] = []
        failed: list[Failed] = []
        lines: list[tuple[object, ...]] = []
        ok = 0
        stamp = now_iso()
        run_id, name, kind_value = self.run_id, self.connector.name, kind.value  # hoisted: this loop is hot
        for change in batch:
            outcome = by_key.get(change.key) or Outcome.retry(change.key, "the connector returned no outcome")
            status = outcome.status
            if status == "ok":
                ok += 1
                clear = change.op == "clear"
                if clear and len(self.report.cleared) < EXAMPLES:
                    self.report.cleared.append((kind_value, change.key))
                fields = {} if clear else (outcome.fields if outcome.fields is not None else change.fields)
                # A first delivery has nothing to merge with: replacing spares the state a read.
                acked.append(
                    Acknowledged(
                        change.key,
                        change.fingerprint,
                        fields,
                        outcome.dest_id,
                        clear or change.is_new,
                        # The change is settled, whatever part of it the destination had to store (a
                        # Segment account without members stores nothing): its fields leave the note.
                        change.fields.keys(),
                    )
                )
            else:
                state = STATUS_RETRYABLE if status == "retryable" else STATUS_REJECTED
                reason_class = outcome.reason_class or reason_class_of(state)
                failed.append(
                    Failed(change.key, change.fingerprint, state, outcome.reason or "unknown", reason_class)
                )
                # Counted by class only: the reason's text names keys and emails, which stay in the state
                # store and the sync log (``accoil-sync failures``), out of logs, alerts and metrics.
                self.report.reasons[reason_class] += 1
                examples = self.report.examples.setdefault(reason_class, [])
                if len(examples) < EXAMPLES:
                    examples.append((change.key, outcome.reason or "unknown"))
            lines.append(
                (
                    run_id,
                    stamp,
                    name,
                    kind_value,
                    change.key,
                    change.op,
                    tuple(change.fields),
                    status,
                    outcome.reason,
                )
            )
        statuses = Counter({"ok": ok}) if ok else Counter()
        if failed:
            statuses.update(f.status for f in failed)
        self.report.counts.update(statuses)
        self.report.by_kind.setdefault(kind_value, Counter()).update(statuses)
        await self.committer.commit(name, kind_value, acked, failed, lines)
        if self.on_progress:
            self.on_progress(len(batch))

    async def _commit_refresh(self, changes: list[Change]) -> None:
        """Source changed but nothing this destination holds did: record the new fingerprint, send nothing."""
        for kind in ObjectKind:
            items = [c for c in changes if c.kind is kind]
            if items:
                await self.committer.commit(
                    self.connector.name,
                    kind.value,
                    [Acknowledged(c.key, c.fingerprint, {}, None) for c in items],
                    [],
                )
        self.report.counts["refreshed"] += len(changes)
        if self.on_progress:  # planned, and settled without a write
            self.on_progress(len(changes))
