"""A lease in the state store: at most one sync at a time, across processes and replicas sharing the store.

Every delivering run takes it -- ``accoil-sync sync`` as well as ``serve``'s scheduled and triggered runs --
so a CronJob, a manual ``sync`` and ``serve.schedule`` on one store never overlap. A holder renews its lease
while it works; a lease that was not renewed before ``expires_at`` belonged to a process that died, and the
next taker gets it -- at once when the holder ran on the same host and its process is gone (kill -9).
Taking, renewing and releasing are single statements inside ``BEGIN IMMEDIATE`` transactions, so two
takers can never both succeed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from accoil_sync.errors import StateStoreError, SyncBusy
from accoil_sync.sync.state import StateStore

SYNC_LEASE = "sync"
POLL_SECONDS = 1.0  # how often a waiting run asks for the lease again

log = logging.getLogger("accoil_sync.lease")


def process_holder() -> str:
    """This process's name for a lease: host and pid (what ``status`` and a refused run show)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _exited_here(holder: str) -> bool:
    """A ``host:pid[:...]`` holder on this host whose process no longer exists. Anything else -- another
    host, a name that is no host:pid, a live pid (even one reused by another program) -- counts as alive."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, but belongs to someone else
        return False
    return False


def run_holder() -> str:
    """A holder unique to one run, so that two runs in one process exclude each other as well."""
    return f"{process_holder()}:{uuid.uuid4().hex[:8]}"


class Lease:
    def __init__(self, state: StateStore, holder: str, *, name: str = SYNC_LEASE, ttl: float = 60.0) -> None:
        self.state = state
        self.holder = holder
        self.name = name
        self.ttl = ttl

    def acquire(self) -> bool:
        now = time.time()
        with self.state.transaction() as db:
            cur = db.execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET holder = excluded.holder, expires_at = excluded.expires_at "
                "WHERE leases.expires_at < ? OR leases.holder = excluded.holder",
                (self.name, self.holder, now + self.ttl, now),
            )
            return cur.rowcount == 1

    def renew(self) -> bool:
        with self.state.transaction() as db:
            cur = db.execute(
                "UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ?",
                (time.time() + self.ttl, self.name, self.holder),
            )
            return cur.rowcount == 1

    def release(self) -> None:
        with self.state.transaction() as db:
            db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (self.name, self.holder))

    def take_over_from_dead(self) -> str | None:
        """Take the lease from a holder on this host whose process has exited (kill -9, OOM, a crash):
        waiting out its ``ttl`` would only delay the next run. Returns the dead holder, if taken."""
        holder = self.holder_now()
        if holder is None or not _exited_here(holder):
            return None
        with self.state.transaction() as db:
            cur = db.execute(
                "UPDATE leases SET holder = ?, expires_at = ? WHERE name = ? AND holder = ?",
                (self.holder, time.time() + self.ttl, self.name, holder),
            )
            return holder if cur.rowcount == 1 else None

    def holder_now(self) -> str | None:
        row = self.state.db.execute(
            "SELECT holder FROM leases WHERE name = ? AND expires_at >= ?", (self.name, time.time())
        ).fetchone()
        return None if row is None else str(row[0])

    def describe_holder(self) -> str:
        """Who holds the lease, for a person: the holder and the run it is executing, when known."""
        holder = self.holder_now()
        if holder is None:
            return "nobody (it just expired)"
        run = self.state.db.execute(
            "SELECT run_id, started_at FROM runs WHERE status = 'running' ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
        return f"{holder}" + (f", run {run[0]} started {run[1][:19]}Z" if run else "")


@contextlib.asynccontextmanager
async def hold(
    path: Path,
    holder: str,
    *,
    ttl: float,
    wait_seconds: float,
    on_lost: Callable[[], None],
    release: bool = True,
) -> AsyncIterator[Lease]:
    """Hold the sync lease for the body: wait up to ``wait_seconds`` for it (0: refuse at once with
    ``SyncBusy``), renew it every third of ``ttl`` and release it at the end. ``on_lost`` is called when a
    renewal finds the lease taken over (this process stalled past ``ttl``): the run must stop.

    ``release=False`` joins a lease a caller already holds under ``holder`` (serve's scheduler, whose
    run executes in a child process): it is renewed and watched all the same -- a run whose lease was
    taken over must stop wherever it runs -- but left held at the end, for its owner to release.

    The lease has its own connection, used from worker threads only, so a renewal never waits on the
    event loop nor shares a transaction with the run's own reads and commits."""
    store = await asyncio.to_thread(StateStore, path)
    try:
        lease = Lease(store, holder, ttl=ttl)
        await _acquire(lease, wait_seconds)
        renewer = asyncio.create_task(_renew(lease, on_lost), name="sync-lease-renewal")
        try:
            yield lease
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            if release:
                try:
                    await asyncio.to_thread(lease.release)
                except StateStoreError as exc:  # it expires by itself; the run's own outcome matters more
                    log.warning("could not release the sync lease (%s); it expires in %.0fs", exc, ttl)
    finally:
        store.close()


async def _acquire(lease: Lease, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    announced = False
    while not await asyncio.to_thread(lease.acquire):
        if dead := await asyncio.to_thread(lease.take_over_from_dead):
            log.warning("took over the sync lease from %s: that process is no longer running", dead)
            return
        other = await asyncio.to_thread(lease.describe_holder)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            waited = f" after waiting {wait_seconds:.0f}s" if wait_seconds else ""
            raise SyncBusy(
                f"another sync is running on the state store {lease.state.path} (held by {other}); this run "
                f'was refused{waited} and sent nothing. Runs never overlap: set state.on_busy = "wait" '
                "(env ACCOIL_SYNC_STATE__ON_BUSY=wait) to queue behind it, or run again later."
            )
        if not announced:
            log.warning("waiting up to %.0fs for the sync lease, held by %s", remaining, other)
            announced = True
        await asyncio.sleep(min(POLL_SECONDS, remaining))


async def _renew(lease: Lease, on_lost: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(lease.ttl / 3)
        try:
            kept = await asyncio.to_thread(lease.renew)
        except StateStoreError as exc:
            log.error("could not renew the sync lease: %s", exc)
            continue
        if not kept:
            log.error(
                "lost the sync lease (this process stalled longer than %.0fs and another run took over): "
                "stopping after the batches in flight",
                lease.ttl,
            )
            on_lost()
            return
